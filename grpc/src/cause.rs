//! Error text that names the cause: tonic reports a failed handshake as "transport error", with
//! the TLS alert or certificate problem several sources down. [`describe`] walks the sources
//! and leads with what happened in words.

use std::error::Error;

use rustls::{AlertDescription, CertificateError};

/// `error` and its sources as one line, led by an explanation when a TLS problem is among them
/// ("the server's certificate has expired: transport error: ... certificate expired ...").
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut explanation = None;
    let mut current = Some(error);
    while let Some(e) = current {
        if explanation.is_none() {
            explanation = tls_error(e).map(explain);
        }
        let text = e.to_string();
        // io::Error and friends repeat their inner error's text; say it once.
        if !chain.iter().any(|seen| seen.contains(&text)) {
            chain.push(text);
        }
        current = e.source();
    }
    let chain = chain.join(": ");
    // h2 keeps only the text of an I/O error, so an alert that ends an HTTP/2 connection
    // arrives as words.
    let explanation = explanation.or_else(|| alert_in_text(&chain).map(explain_alert));
    match explanation {
        Some(explanation) => format!("{explanation} ({chain})"),
        None => chain,
    }
}

/// A status's message (its code when it has none), with the sources of a transport failure
/// described as by [`describe`] (a status made from a broken connection says only "transport
/// error").
pub fn describe_status(status: &tonic::Status) -> String {
    let mut text = match status.message() {
        "" => format!("{:?}", status.code()),
        message => message.to_owned(),
    };
    if let Some(source) = status.source() {
        let described = describe(source);
        if !text.contains(&described) {
            text = format!("{text}: {described}");
        }
    }
    text
}

/// The rustls error behind `error`, looking inside `io::Error` (whose `source` skips it).
fn tls_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The alert named in rustls' "received fatal alert: NAME" text.
fn alert_in_text(text: &str) -> Option<AlertDescription> {
    let (_, rest) = text.split_once("received fatal alert: ")?;
    let name: String = rest
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    Some(match name.as_str() {
        "CertificateRequired" => AlertDescription::CertificateRequired,
        "UnknownCA" => AlertDescription::UnknownCA,
        "BadCertificate" => AlertDescription::BadCertificate,
        "CertificateExpired" => AlertDescription::CertificateExpired,
        "CertificateUnknown" => AlertDescription::CertificateUnknown,
        "AccessDenied" => AlertDescription::AccessDenied,
        _ => return None,
    })
}

fn explain(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate) => explain_certificate(certificate),
        rustls::Error::AlertReceived(alert) => explain_alert(*alert),
        rustls::Error::NoCertificatesPresented => "the peer presented no certificate".to_owned(),
        other => format!("TLS handshake failed: {other}"),
    }
}

fn explain_certificate(error: &CertificateError) -> String {
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet".to_owned()
        }
        CertificateError::UnknownIssuer => "the server's certificate is not signed by a \
             trusted CA (unknown issuer: check --grpc-ca)"
            .to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is not valid for the name dialed (see --grpc-server-name)"
                .to_owned()
        }
        other => format!("the server's certificate was refused: {other}"),
    }
}

fn explain_alert(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "the server requires a client certificate (--grpc-cert and --grpc-key) and refused \
             the handshake"
                .to_owned()
        }
        AlertDescription::UnknownCA | AlertDescription::BadCertificate => {
            "the server refused the client certificate: not signed by a CA it trusts".to_owned()
        }
        AlertDescription::CertificateExpired => {
            "the server refused the client certificate: it has expired".to_owned()
        }
        other => format!("the server ended the TLS handshake: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_error_inside_an_io_error_is_explained_and_said_once() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::Expired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let text = describe(&io);
        assert!(
            text.starts_with("the server's certificate has expired ("),
            "{text}"
        );
        assert_eq!(
            text.matches("invalid peer certificate").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn an_alert_that_h2_turned_into_text_is_explained() {
        let io = std::io::Error::other("connection error: received fatal alert: UnknownCA");
        let text = describe(&io);
        assert!(
            text.starts_with("the server refused the client certificate: not signed"),
            "{text}"
        );
    }

    #[test]
    fn other_errors_are_their_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(describe(&io), "refused");
    }
}
