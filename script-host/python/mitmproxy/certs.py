"""`mitmproxy.certs`: `Cert`, an X.509 certificate as scripts read it.

`flow.server_conn.certificate_list` and `flow.client_conn.certificate_list` hold `Cert`s (the
upstream server's chain, the client's certificate); `flow.server_conn.cert` is the leaf.
Backed by the `cryptography` package. A Cert's state is its PEM encoding.

flowtap's proxy mints its certificates in Rust; `CertStore` here is mitmproxy's store for
plain-Python use (an addon's tests, tools): a CA in a directory (`from_store`), certificates
minted on demand (`get_cert`), certificates added by name (`add_cert_file`).
"""

import contextlib
import dataclasses
import datetime
import logging
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ExtendedKeyUsageOID, NameOID

from mitmproxy.coretypes import serializable


def _load(data):
    """A certificate from PEM or DER bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _load_pem_all(raw):
    """Every certificate in PEM `raw` (cryptography < 39 has no load_pem_x509_certificates)."""
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", raw, re.S)
    if not blocks:
        raise ValueError("no certificate found")
    return [x509.load_pem_x509_certificate(b) for b in blocks]


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


logger = logging.getLogger(__name__)

CA_EXPIRY = datetime.timedelta(days=10 * 365)
CERT_EXPIRY = datetime.timedelta(days=199)  # browsers refuse longer-lived leaf certificates
CRL_EXPIRY = datetime.timedelta(days=7)
CERT_VALIDITY_OFFSET = datetime.timedelta(days=-2)  # clients with clocks a little behind


def _validity(builder, lifetime):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (builder.not_valid_before(now + CERT_VALIDITY_OFFSET)
            .not_valid_after(now + CERT_VALIDITY_OFFSET + lifetime))


def create_ca(organization, cn, key_size):
    """`(private_key, certificate)` of a new RSA CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    builder = _validity(x509.CertificateBuilder(), CA_EXPIRY)
    builder = (builder.serial_number(x509.random_serial_number()).subject_name(name)
               .issuer_name(name).public_key(key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False)
               .add_extension(x509.KeyUsage(
                   digital_signature=False, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True,
                   crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    return key, builder.sign(private_key=key, algorithm=hashes.SHA256())


def dummy_cert(privkey, cacert, commonname, sans, organization=None, crl_url=None):
    """A leaf certificate for `commonname` and `sans` (GeneralNames), signed by the CA."""
    sans = x509.GeneralNames(list(sans))
    builder = _validity(x509.CertificateBuilder(), CERT_EXPIRY)
    builder = (builder.issuer_name(cacert.subject).public_key(cacert.public_key())
               .serial_number(x509.random_serial_number())
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False))
    subject = []
    valid_cn = commonname is not None and len(commonname) < 64
    if valid_cn:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, commonname))
    if organization is not None:
        subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    builder = builder.subject_name(x509.Name(subject))
    # RFC 5280 4.2.1.6: the SAN is critical when the subject is empty.
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not valid_cn)
    try:
        ski = cacert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(cacert.public_key())
    builder = builder.add_extension(aki, critical=False)
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], relative_name=None, crl_issuer=None,
            reasons=None)]), critical=False)
    return Cert(builder.sign(private_key=privkey, algorithm=hashes.SHA256()))


def dummy_crl(privkey, cacert):
    """An empty CRL (DER) signed by the CA."""
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(cacert.issuer)
               .last_update(now + CERT_VALIDITY_OFFSET)
               .next_update(now + CERT_VALIDITY_OFFSET + CRL_EXPIRY)
               .add_extension(x509.CRLNumber(1000), False))
    return builder.sign(private_key=privkey, algorithm=hashes.SHA256()).public_bytes(
        serialization.Encoding.DER)


def load_pem_private_key(data, password):
    """The private key in PEM `data`; an unencrypted key loads whatever `password` says."""
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is not None:
            return load_pem_private_key(data, None)
        raise


@dataclasses.dataclass(frozen=True)
class CertStoreEntry:
    cert: Cert
    privatekey: object
    chain_file: object
    chain_certs: list


class CertStore:
    """A CA and the certificates it issued or was given, looked up by name."""

    STORE_CAP = 100

    def __init__(self, default_privatekey, default_ca, default_chain_file, default_crl,
                 dhparams=None):
        self.default_privatekey = default_privatekey
        self.default_ca = default_ca
        self.default_chain_file = default_chain_file
        self.default_crl = default_crl
        if default_chain_file:
            self.default_chain_certs = [
                Cert(c) for c in _load_pem_all(default_chain_file.read_bytes())]
        else:
            self.default_chain_certs = [default_ca]
        self.dhparams = dhparams
        self.certs = {}
        self.expire_queue = []

    def expire(self, entry):
        """Keeps at most STORE_CAP minted certificates, dropping the oldest."""
        self.expire_queue.append(entry)
        if len(self.expire_queue) > self.STORE_CAP:
            oldest = self.expire_queue.pop(0)
            self.certs = {k: v for k, v in self.certs.items() if v != oldest}

    @classmethod
    def from_store(cls, path, basename, key_size, passphrase=None):
        """The store in directory `path` (`BASENAME-ca.pem`), created there if missing."""
        path = Path(path)
        ca_file = path / f"{basename}-ca.pem"
        if not ca_file.exists():
            cls.create_store(path, basename, key_size)
        return cls.from_files(ca_file, path / f"{basename}-dhparam.pem", passphrase)

    @classmethod
    def from_files(cls, ca_file, dhparam_file=None, passphrase=None):
        raw = ca_file.read_bytes()
        key = load_pem_private_key(raw, passphrase)
        certs = _load_pem_all(raw)
        ca = Cert(certs[0])
        chain_file = ca_file if len(certs) > 1 else None
        dhparams = dhparam_file.read_bytes() if dhparam_file and dhparam_file.exists() else None
        return cls(key, ca, chain_file, dummy_crl(key, ca._cert), dhparams)

    @staticmethod
    @contextlib.contextmanager
    def umask_secret():
        """Files created in the block are readable by their owner only."""
        original = os.umask(0)
        os.umask(original | 0o77)
        try:
            yield
        finally:
            os.umask(original)

    @staticmethod
    def create_store(path, basename, key_size, organization=None, cn=None):
        """Writes a new CA into `path`: the key and certificate (owner-only), and the
        certificate alone as PEM, CER and PKCS#12 for clients to install."""
        path.mkdir(parents=True, exist_ok=True)
        key, ca = create_ca(organization or basename, cn or basename, key_size)
        none = serialization.NoEncryption()
        with CertStore.umask_secret():
            (path / f"{basename}-ca.pem").write_bytes(
                key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL, none)
                + ca.public_bytes(serialization.Encoding.PEM))
            (path / f"{basename}-ca.p12").write_bytes(pkcs12.serialize_key_and_certificates(
                basename.encode(), key, ca, None, none))
        pem = ca.public_bytes(serialization.Encoding.PEM)
        (path / f"{basename}-ca-cert.pem").write_bytes(pem)
        (path / f"{basename}-ca-cert.cer").write_bytes(pem)
        (path / f"{basename}-ca-cert.p12").write_bytes(pkcs12.serialize_key_and_certificates(
            basename.encode(), None, ca, None, none))

    def add_cert_file(self, spec, path, passphrase=None):
        """Serves the certificate in PEM file `path` (with its key, else the CA's key) for
        `spec` and the names in it; ValueError if no matching private key is found."""
        raw = path.read_bytes()
        cert = Cert.from_pem(raw)
        try:
            key = load_pem_private_key(raw, password=passphrase)
        except ValueError as e:
            key = self.default_privatekey
            if cert.public_key() != key.public_key():
                raise ValueError(f'Unable to find private key in "{path.absolute()}": {e}') from e
        else:
            if cert.public_key() != key.public_key():
                raise ValueError(f'Private and public keys in "{path.absolute()}" do not match')
        try:
            chain = [Cert(c) for c in _load_pem_all(raw)]
        except ValueError as e:
            logger.warning(f"Failed to read certificate chain: {e}")
            chain = [cert]
        if cert.is_ca:
            logger.warning(f'"{path.absolute()}" is a certificate authority and not a leaf '
                           "certificate. This indicates a misconfiguration, see "
                           "https://docs.mitmproxy.org/stable/concepts-certificates/.")
        self.add_cert(CertStoreEntry(cert, key, path, chain), spec)

    def add_cert(self, entry, *names):
        """Registers `entry` under its CN, its SANs and `names`."""
        if entry.cert.cn:
            self.certs[entry.cert.cn] = entry
        for san in entry.cert.altnames:
            self.certs[str(san.value)] = entry
        for name in names:
            self.certs[name] = entry

    @staticmethod
    def asterisk_forms(dn):
        """`www.example.com` -> [itself, `*.example.com`, `*.com`]."""
        if isinstance(dn, str):
            parts = dn.split(".")
            return [dn] + ["*." + ".".join(parts[i:]) for i in range(1, len(parts))]
        if isinstance(dn, x509.DNSName):
            return CertStore.asterisk_forms(dn.value)
        return [str(dn.value)]

    def get_cert(self, commonname, sans, organization=None, crl_url=None):
        """A certificate for the name: one added for it (wildcards match), else one minted."""
        sans = x509.GeneralNames(list(sans))
        keys = self.asterisk_forms(commonname) if commonname else []
        for san in sans:
            keys += self.asterisk_forms(san)
        keys += ["*", (commonname, sans)]
        found = next((k for k in keys if k in self.certs), None)
        if found is not None:
            return self.certs[found]
        entry = CertStoreEntry(
            dummy_cert(self.default_privatekey, self.default_ca._cert, commonname, sans,
                       organization, crl_url),
            self.default_privatekey, self.default_chain_file, self.default_chain_certs)
        self.certs[(commonname, sans)] = entry
        self.expire(entry)
        return entry
