"""The modules beyond flows that scripts import: net.http, contentviews, io, certs, tls, dns,
proxy.mode_specs, coretypes, utils."""

import dataclasses
import datetime
import io as pyio
import struct
import typing
import unittest

from tests.support import http_state  # noqa: F401  (sets sys.path)
from mitmproxy import connection, contentviews, dns, exceptions, http, io, tls
from mitmproxy.coretypes import serializable
from mitmproxy.io import tnetstring
from mitmproxy.net import encoding, server_spec
from mitmproxy.net.http import cookies, multipart, url, validate
from mitmproxy.net.http.headers import infer_content_encoding, parse_content_type
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils
from mitmproxy.utils import human, strutils


class NetHttpTest(unittest.TestCase):
    def test_cookies(self):
        self.assertEqual(cookies.parse_cookie_header('a=1; b="x;y"; c'),
                         [["a", "1"], ["b", "x;y"], ["c", ""]])
        (name, value, attrs), second = cookies.parse_set_cookie_header(
            "sid=abc; Path=/; expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly, theme=dark")
        self.assertEqual((name, value, attrs["path"]), ("sid", "abc", "/"))
        self.assertEqual(attrs["Expires"], "Wed, 21 Oct 2015 07:28:00 GMT")
        self.assertEqual(second[:2], ("theme", "dark"))
        self.assertTrue(cookies.is_expired(attrs))
        self.assertEqual(cookies.format_cookie_header([("a", "x y")]), 'a="x y"')
        refreshed = cookies.refresh_set_cookie_header(
            "a=b; expires=Wed, 21 Oct 2015 07:28:00 GMT", 3600)
        self.assertIn("08:28:00", refreshed)

    def test_message_cookies_use_the_parser(self):
        resp = http.Response.make(200, b"", {"Set-Cookie": "a=b; Path=/x, c=d"})
        self.assertEqual(resp.cookies["a"][0], "b")
        self.assertEqual(resp.cookies["a"][1]["path"], "/x")
        self.assertEqual(resp.cookies["c"][0], "d")
        req = tutils.treq(headers=http.Headers(cookie='k="v;w"'))
        self.assertEqual(req.cookies["k"], "v;w")

    def test_url_and_authority(self):
        self.assertEqual(url.parse("https://example.com/a?b"), (b"https", b"example.com", 443, b"/a?b"))
        with self.assertRaises(ValueError):
            url.parse("http://exa mple.com/")
        self.assertEqual(url.hostport("https", "h", 8443), "h:8443")
        self.assertEqual(url.parse_authority("[::1]:80", True), ("::1", 80))
        self.assertEqual(url.parse_authority("bad host:x", False), ("bad host:x", None))
        self.assertEqual(url.encode([("a", "")], similar_to="a&b"), "a")

    def test_validate_refuses_smuggling(self):
        resp = http.Response.make()
        resp.headers = http.Headers(transfer_encoding="chunked", content_length="3")
        with self.assertRaisesRegex(ValueError, "both transfer-encoding and content-length"):
            validate.validate_headers(resp)
        self.assertEqual(validate.parse_transfer_encoding("gzip, chunked"), "gzip,chunked")
        with self.assertRaises(ValueError):
            validate.parse_content_length("+1")

    def test_multipart_roundtrip_and_charsets(self):
        ct = "multipart/form-data; boundary=XyZ"
        body = multipart.encode_multipart(ct, [(b"a", b"1"), (b"b", b"two")])
        self.assertEqual(multipart.decode_multipart(ct, body), [(b"a", b"1"), (b"b", b"two")])
        self.assertEqual(parse_content_type("text/html; charset=UTF-8"),
                         ("text", "html", {"charset": "UTF-8"}))
        self.assertEqual(infer_content_encoding("text/html", b'<meta charset="gbk">'), "gb18030")
        self.assertEqual(infer_content_encoding("", b"\xef\xbb\xbfx"), "utf-8-sig")

    def test_server_spec_and_modes(self):
        self.assertEqual(server_spec.parse("http://[::1]:8080", "https"), ("http", ("::1", 8080)))
        mode = ProxyMode.parse("reverse:https://example.com@127.0.0.1:8443")
        self.assertEqual((mode.type_name, mode.data), ("reverse", "https://example.com"))
        self.assertEqual((mode.listen_host(), mode.listen_port()), ("127.0.0.1", 8443))
        self.assertEqual(mode.address, ("example.com", 443))
        self.assertEqual(ProxyMode.parse("dns").listen_port(), 53)
        with self.assertRaisesRegex(ValueError, "invalid port"):
            ProxyMode.parse("regular@99999")
        with self.assertRaises(dataclasses.FrozenInstanceError):
            mode.set_state("regular")

    def test_encoding(self):
        self.assertEqual(encoding.decode(encoding.encode(b"x" * 50, "gzip"), "gzip"), b"x" * 50)
        self.assertEqual(encoding.decode(b"\xe4", "latin-1"), "\xe4")
        with self.assertRaises(TypeError):
            encoding.decode("text", "gzip")
        with self.assertRaises(ValueError):
            encoding.decode(b"not gzip", "gzip")


class ContentviewsTest(unittest.TestCase):
    def test_auto_view_selection(self):
        f = tflow.tflow(resp=tutils.tresp(content=b'{"a": [1, 2]}'))
        f.response.headers["content-type"] = "application/json"
        result = contentviews.prettify_message(f.response, f)
        self.assertEqual(result.view_name, "JSON")
        self.assertEqual(result.text, '{\n    "a": [\n        1,\n        2\n    ]\n}')
        f.response.headers["content-type"] = "text/html"
        f.response.content = b"<html><body><p>hi</p></body></html>"
        self.assertEqual(contentviews.prettify_message(f.response, f).text,
                         "<html>\n<body>\n  <p>hi</p>\n</body>\n</html>\n")
        f.request.headers["content-type"] = "application/x-www-form-urlencoded"
        f.request.content = b"a=1&a=2&b=x+y"
        self.assertEqual(contentviews.prettify_message(f.request, f).text,
                         "a:\n- '1'\n- '2'\nb: x y\n")

    def test_broken_data_falls_back_to_raw(self):
        f = tflow.tflow(resp=tutils.tresp(content=b"{not json"))
        f.response.headers["content-type"] = "application/json"
        result = contentviews.prettify_message(f.response, f)
        self.assertEqual(result.view_name, "Raw")
        self.assertIn("failed to parse as JSON", result.description)

    def test_add_and_remove_a_view(self):
        class Reverse(contentviews.Contentview):
            def prettify(self, data, metadata):
                return data[::-1].decode()

            def render_priority(self, data, metadata):
                return 2 if metadata.content_type == "text/reversed" else 0

        contentviews.add(Reverse)
        try:
            f = tflow.tflow(resp=tutils.tresp(content=b"abc"))
            f.response.headers["content-type"] = "text/reversed"
            self.assertEqual(contentviews.prettify_message(f.response, f).text, "cba")
        finally:
            contentviews.remove("Reverse")
        self.assertNotEqual(contentviews.prettify_message(f.response, f).view_name, "Reverse")

    def test_image_and_hex(self):
        png = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (3).to_bytes(4, "big")
               + (2).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00" + b"\x00" * 4)
        meta = contentviews.Metadata(content_type="image/png")
        self.assertIn("Size: 3 x 2 px", contentviews.registry["image"].prettify(png, meta))
        self.assertEqual(contentviews.registry.get_view(b"\xff" * 30,
                                                        contentviews.Metadata()).name, "Hex Dump")


class IoTest(unittest.TestCase):
    def test_flow_files_in_plain_python(self):
        buf = pyio.BytesIO()
        writer = io.FlowWriter(buf)
        for f in tflow.tflows():
            writer.add(f)
        read = list(io.FlowReader(pyio.BytesIO(buf.getvalue())).stream())
        self.assertEqual([f.type for f in read], [f.type for f in tflow.tflows()])
        self.assertEqual(read[0].response.content, b"message")
        with self.assertRaisesRegex(exceptions.FlowReadException, "flow format version 0"):
            list(io.FlowReader(pyio.BytesIO(b"14:7:version;1:0#}")).stream())
        with self.assertRaisesRegex(exceptions.FlowReadException, "Invalid data format"):
            list(io.FlowReader(pyio.BytesIO(b"bogus")).stream())

    def test_tnetstring(self):
        value = {b"k": [1, 2.5, True, None, "text", b"\x00"]}
        self.assertEqual(tnetstring.dumps(value),
                         b"39:1:k,31:1:1#3:2.5^4:true!0:~4:text;1:\x00,]}")
        self.assertEqual(tnetstring.loads(tnetstring.dumps(value)), value)
        self.assertEqual(tnetstring.pop(b"0:~rest"), (None, b"rest"))
        with self.assertRaises(ValueError):
            tnetstring.loads(b"5:abc,")
        deep = b"0:]"
        for _ in range(100):
            deep = str(len(deep)).encode() + b":" + deep + b"]"
        with self.assertRaisesRegex(ValueError, "nested"):
            tnetstring.loads(deep)


def _certificate():
    """A self-signed certificate made at test time, or None without `cryptography`."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        return None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "example.test"),
                      x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "flowtap tests")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.test"),
                                                        x509.DNSName("*.example.test")]), False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


class CertsTlsDnsTest(unittest.TestCase):
    def test_certificate_list_holds_certs_and_sends_the_bytes_back(self):
        der = _certificate()
        if der is None:
            self.skipTest("no cryptography package")
        server = connection.Server(address=("example.test", 443), certificate_list=[der])
        cert = server.cert
        self.assertEqual((cert.cn, cert.organization, cert.serial), ("example.test", "flowtap tests", 7))
        self.assertEqual([str(n.value) for n in cert.altnames], ["example.test", "*.example.test"])
        self.assertEqual(cert.keyinfo, ("EC (secp256r1)", 256))
        self.assertFalse(cert.has_expired())
        self.assertEqual(server.get_state()["certificate_list"], [der])
        self.assertEqual(type(cert).from_state(cert.get_state()), cert)

    def test_client_hello(self):
        sni = b"\x00\x00\x0bexample.com"
        sni_ext = b"\x00\x00" + (len(sni) + 2).to_bytes(2, "big") + len(sni).to_bytes(2, "big") + sni
        alpn = b"\x02h2\x08http/1.1"
        alpn_ext = b"\x00\x10" + (len(alpn) + 2).to_bytes(2, "big") + len(alpn).to_bytes(2, "big") + alpn
        exts = sni_ext + alpn_ext
        hello = (b"\x03\x03" + b"\x01" * 32 + b"\x00" + b"\x00\x04\x13\x01\x13\x02" + b"\x01\x00"
                 + len(exts).to_bytes(2, "big") + exts)
        ch = tls.ClientHello(hello)
        self.assertEqual(ch.sni, "example.com")
        self.assertEqual(ch.alpn_protocols, [b"h2", b"http/1.1"])
        self.assertEqual(ch.cipher_suites, [0x1301, 0x1302])
        self.assertEqual(ch.raw_bytes(True)[:1], b"\x16")
        with self.assertRaises(ValueError):
            tls.ClientHello(hello[:20])

    def test_dns_wire_format(self):
        resp = tutils.tdnsresp()
        resp.answers.append(dns.ResourceRecord.CNAME("dns.google", "alias.example"))
        again = dns.DNSMessage.unpack(resp.packed, resp.timestamp)
        self.assertEqual(again, resp)
        self.assertEqual(str(again.answers[2]), "alias.example")
        self.assertEqual(dns.types.to_str(dns.types.AAAA), "AAAA")
        self.assertEqual(dns.types.from_str("TYPE(999)"), 999)
        with self.assertRaises(struct.error):
            dns.DNSMessage.unpack(resp.packed + b"x")
        self.assertIn(b"\xc0\x0c", resp.packed)  # the answer's name points at the question's
        self.assertEqual(dns.DNSMessage.from_json(resp.to_json()), resp)
        self.assertEqual(resp.size, 8 + len(resp.answers[2].data))


@dataclasses.dataclass
class Point(serializable.SerializableDataclass):
    x: int
    label: typing.Optional[str] = None
    tags: typing.List[str] = dataclasses.field(default_factory=list)


class CoreUtilsTest(unittest.TestCase):
    def test_serializable_dataclass(self):
        p = Point(1, "a", ["t"])
        self.assertEqual(p.get_state(), {"x": 1, "label": "a", "tags": ["t"]})
        self.assertEqual(Point.from_state({"x": 2, "label": None, "tags": []}), Point(2))
        with self.assertRaises(ValueError):
            Point.from_state({"x": "no", "label": None, "tags": []})

    def test_strutils_and_human(self):
        self.assertEqual(strutils.escape_control_characters("a\x00b\n"), "a.b\n")
        self.assertEqual(strutils.bytes_to_escaped_str(b"\x00'\n", keep_spacing=True), "\\x00'\n")
        self.assertTrue(strutils.is_mostly_bin(b"\x00\x01\x02" * 10))
        self.assertFalse(strutils.is_mostly_bin("grüße".encode() * 10))
        self.assertEqual(list(strutils.hexdump(b"AB"))[0][0], "0000000000")
        self.assertEqual(strutils.cut_after_n_lines("a\nb\nc", 2), "a\nb\n")
        self.assertEqual(human.pretty_size(1536), "1.5k")
        self.assertEqual(human.parse_size("2k"), 2048)
        self.assertEqual(human.format_address(("::ffff:1.2.3.4", 80)), "1.2.3.4:80")


if __name__ == "__main__":
    unittest.main()


class CertStoreTest(unittest.TestCase):
    def test_store_mints_and_reuses(self):
        try:
            from cryptography import x509
            from mitmproxy import certs
        except ImportError:
            self.skipTest("no cryptography package")
        import os
        import pathlib
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            store = certs.CertStore.from_store(d, "flowtap-test", 2048)
            self.assertEqual(os.stat(pathlib.Path(d) / "flowtap-test-ca.pem").st_mode & 0o77, 0)
            entry = store.get_cert("example.test", [x509.DNSName("*.example.test")])
            self.assertEqual(entry.cert.cn, "example.test")
            self.assertFalse(entry.cert.is_ca)
            self.assertEqual(entry.cert.issuer, store.default_ca.subject)
            self.assertIs(store.get_cert("example.test", [x509.DNSName("*.example.test")]), entry)
            again = certs.CertStore.from_store(d, "flowtap-test", 2048)
            self.assertEqual(again.default_ca, store.default_ca)
            self.assertEqual(certs.CertStore.asterisk_forms("a.b.c"), ["a.b.c", "*.b.c", "*.c"])
