"""`mitmproxy.certs`: `Cert`, an X.509 certificate as scripts read it.

`flow.server_conn.certificate_list` and `flow.client_conn.certificate_list` hold `Cert`s (the
upstream server's chain, the client's certificate); `flow.server_conn.cert` is the leaf.
Backed by the `cryptography` package. A Cert's state is its PEM encoding. flowtap's CA and the
certificates it mints live in the proxy (Rust); there is no `CertStore` here.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from mitmproxy.coretypes import serializable


def _load(data):
    """A certificate from PEM or DER bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _name_to_keyval(name):
    return [(attr.rfc4514_string().partition("=")[0], attr.value) for attr in name]


def _utc(cert, attr):
    value = getattr(cert, attr + "_utc", None)
    if value is None:  # cryptography < 42
        value = getattr(cert, attr).replace(tzinfo=datetime.timezone.utc)
    return value


class Cert(serializable.Serializable):
    """A (TLS) certificate."""

    def __init__(self, cert):
        if not isinstance(cert, x509.Certificate):
            raise TypeError(f"expected a cryptography Certificate, got {type(cert).__name__}")
        self._cert = cert

    def __eq__(self, other):
        return isinstance(other, Cert) and self.fingerprint() == other.fingerprint()

    def __hash__(self):
        return hash(self._cert)

    def __repr__(self):
        altnames = [str(x.value) for x in self.altnames]
        return f"<Cert(cn={self.cn!r}, altnames={altnames!r})>"

    @classmethod
    def from_state(cls, state):
        return cls(_load(state))

    def get_state(self):
        return self.to_pem()

    def set_state(self, state):
        self._cert = _load(state)

    @classmethod
    def from_pem(cls, data):
        return cls(x509.load_pem_x509_certificate(data))

    def to_pem(self):
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_pyopenssl(cls, x509_cert):
        return cls(x509_cert.to_cryptography())

    def to_pyopenssl(self):
        import OpenSSL

        return OpenSSL.crypto.X509.from_cryptography(self._cert)

    def to_cryptography(self):
        return self._cert

    def public_key(self):
        return self._cert.public_key()

    def fingerprint(self):
        """The SHA-256 fingerprint."""
        return self._cert.fingerprint(hashes.SHA256())

    @property
    def issuer(self):
        return _name_to_keyval(self._cert.issuer)

    @property
    def subject(self):
        return _name_to_keyval(self._cert.subject)

    @property
    def notbefore(self):
        return _utc(self._cert, "not_valid_before")

    @property
    def notafter(self):
        return _utc(self._cert, "not_valid_after")

    def has_expired(self):
        return datetime.datetime.now(datetime.timezone.utc) > self.notafter

    @property
    def serial(self):
        return self._cert.serial_number

    @property
    def is_ca(self):
        try:
            return self._cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    @property
    def keyinfo(self):
        """`(algorithm, bits)`: ("RSA", 2048), ("EC (secp256r1)", 256), ..."""
        key = self._cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            return "RSA", key.key_size
        if isinstance(key, dsa.DSAPublicKey):
            return "DSA", key.key_size
        if isinstance(key, ec.EllipticCurvePublicKey):
            return f"EC ({key.curve.name})", key.key_size
        return (type(key).__name__.replace("PublicKey", "").replace("_", ""),
                getattr(key, "key_size", -1))

    def _subject_attr(self, oid):
        attrs = self._cert.subject.get_attributes_for_oid(oid)
        return attrs[0].value if attrs else None

    @property
    def cn(self):
        return self._subject_attr(x509.NameOID.COMMON_NAME)

    @property
    def organization(self):
        return self._subject_attr(x509.NameOID.ORGANIZATION_NAME)

    @property
    def altnames(self):
        """The SubjectAlternativeName entries (`x509.GeneralNames`)."""
        try:
            sans = self._cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return x509.GeneralNames([])
        return x509.GeneralNames(sans.value)

    @property
    def crl_distribution_points(self):
        try:
            ext = self._cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            return []
        return [p.full_name[0].value for p in ext
                if p.full_name and isinstance(p.full_name[0], x509.UniformResourceIdentifier)]
