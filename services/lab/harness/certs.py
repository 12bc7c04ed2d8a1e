"""Test certificates made with the JDK's `keytool`: a CA, the broker and client ones it signs."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from lab.harness.kafka import TOOL_JVM, HarnessError, require_tools

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

log = structlog.get_logger(__name__)

LOCAL_NAMES = ("localhost", "127.0.0.1")
"""What the harness's brokers are reached by: their certificates name both."""
VALIDITY_DAYS = 30
# EC keys: keytool makes them in a fraction of an RSA key's time; Kafka and OpenSSL take both.
KEY_OPTIONS = ("-keyalg", "EC", "-groupname", "secp256r1")
# keytool is a JVM of its own per step: the C1 compiler alone and a serial GC start it fastest.
KEYTOOL_JVM = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")
PASSWORD_FILE = "password"  # noqa: S105 - the name of a file, not a password


def _subject_alternative_names(names: Sequence[str]) -> str:
    kinds = ("ip" if name.replace(".", "").isdigit() or ":" in name else "dns" for name in names)
    return "SAN=" + ",".join(f"{kind}:{name}" for kind, name in zip(kinds, names, strict=True))


@dataclass(frozen=True)
class BrokerKeystore:
    """What a broker's TLS listener is configured with: its keystore, the CA's truststore."""

    keystore: Path
    truststore: Path
    password: str = field(repr=False)


@dataclass(frozen=True)
class ClientCertificate:
    """A client's certificate chain and unencrypted key, as PEM files (what Python loads)."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA of its own: its key in a PKCS12 store, its certificate as PEM for Python clients."""

    directory: Path
    password: str = field(repr=False)

    @property
    def keystore(self) -> Path:
        """The CA's key and certificate (PKCS12)."""
        return self.directory / "ca.p12"

    @property
    def certificate(self) -> Path:
        """The CA's certificate (PEM): what a client trusts, `HUB_KAFKA_SSL_CA_FILE`."""
        return self.directory / "ca.pem"

    @property
    def truststore(self) -> Path:
        """The CA's certificate alone (PKCS12): a broker's `ssl.truststore.location`."""
        return self.directory / "truststore.p12"

    @classmethod
    def create(cls, directory: Path, name: str = "hub-test-ca") -> CertificateAuthority:
        """Make a CA in `directory`, or load the one made there before."""
        directory.mkdir(parents=True, exist_ok=True)
        secret = directory / PASSWORD_FILE
        if secret.exists():
            return cls(directory, secret.read_text().strip())
        ca = cls(directory, secrets.token_hex(16))
        ca.keytool("-genkeypair", "-alias", "ca", *KEY_OPTIONS, "-dname", f"CN={name}",
                   "-ext", "bc:c", "-ext", "KeyUsage:critical=keyCertSign,cRLSign",
                   "-validity", str(VALIDITY_DAYS),
                   *ca.store(ca.keystore))  # fmt: skip
        ca.keytool("-exportcert", "-rfc", "-alias", "ca", "-file", str(ca.certificate),
                   *ca.store(ca.keystore))  # fmt: skip
        ca.keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(ca.certificate),
                   *ca.store(ca.truststore))  # fmt: skip
        secret.write_text(ca.password)  # last: a CA whose password is on disk is complete
        log.info("test_ca_created", directory=str(directory), name=name)
        return ca

    def store(self, path: Path) -> tuple[str, ...]:
        """The options naming a PKCS12 store at `path` under this CA's password."""
        return ("-keystore", str(path), "-storetype", "PKCS12", "-storepass", self.password)

    def keytool(self, *arguments: str) -> None:
        """Run keytool; a HarnessError carries its output when it fails."""
        keytool = require_tools("keytool")["keytool"]
        result = subprocess.run(  # noqa: S603 - our own keytool command line
            [keytool, *KEYTOOL_JVM, *arguments],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise HarnessError(f"keytool {arguments[0]} failed: {result.stdout}{result.stderr}")

    def issue(self, name: str, hostnames: Sequence[str] = LOCAL_NAMES) -> BrokerKeystore:
        """A PKCS12 keystore (key, certificate, CA) for a server named by `hostnames`.

        The certificate's subject alternative names are `hostnames`: a client checking the
        host name accepts it for those addresses only. Under the CA's password; made once.
        """
        san = _subject_alternative_names(hostnames)
        keystore = self._signed_keystore(name, f"CN={hostnames[0]}", ("-ext", san),
                                         "serverAuth,clientAuth")  # fmt: skip
        log.info("test_certificate_issued", name=name, hostnames=list(hostnames))
        return BrokerKeystore(keystore, self.truststore, self.password)

    def issue_client(self, name: str) -> ClientCertificate:
        """A client's certificate (`CN=name`, its chain as PEM) and key (PEM), for mutual TLS.

        keytool cannot write a private key out: a few lines of Java read it from the keystore.
        """
        issued = ClientCertificate(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        if issued.key.exists():
            return issued
        keystore = self._signed_keystore(name, f"CN={name}", (), "clientAuth")
        source = self.directory / "PemKey.java"
        source.write_text(_PEM_KEY_JAVA)
        java = require_tools("java")["java"]
        result = subprocess.run(  # noqa: S603 - our own java command line
            [java, *TOOL_JVM, str(source), str(keystore), self.password, name],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise HarnessError(f"exporting the key of {name} failed: {result.stderr}")
        partial = issued.key.with_suffix(".partial")
        partial.write_text(result.stdout)
        partial.chmod(0o600)
        partial.replace(issued.key)
        log.info("test_client_certificate_issued", name=name)
        return issued

    def _signed_keystore(
        self, name: str, subject: str, extensions: Sequence[str], usage: str
    ) -> Path:
        """A PKCS12 keystore at `name.p12` with a new key and its certificate signed by this CA.

        `name.pem` is left beside it: the certificate and the CA's, the chain a peer is shown.
        """
        keystore = self.directory / f"{name}.p12"
        if keystore.exists():
            return keystore
        partial = keystore.with_suffix(".partial.p12")
        partial.unlink(missing_ok=True)
        request = self.directory / f"{name}.csr"
        signed = self.directory / f"{name}.pem"
        self.keytool("-genkeypair", "-alias", name, *KEY_OPTIONS, "-dname", subject,
                     *extensions, *self.store(partial))  # fmt: skip
        self.keytool("-certreq", "-alias", name, "-file", str(request), *self.store(partial))
        self.keytool("-gencert", "-rfc", "-alias", "ca", "-infile", str(request),
                     "-outfile", str(signed), "-validity", str(VALIDITY_DAYS), *extensions,
                     "-ext", "KeyUsage:critical=digitalSignature",
                     "-ext", f"ExtendedKeyUsage={usage}",
                     *self.store(self.keystore))  # fmt: skip
        # The whole chain in one reply: a peer is shown it, and needs only the CA to check it.
        signed.write_text(signed.read_text() + self.certificate.read_text())
        self.keytool("-importcert", "-noprompt", "-alias", name, "-file", str(signed),
                     *self.store(partial))  # fmt: skip
        request.unlink()
        partial.replace(keystore)
        return keystore


# Run by `java PemKey.java` (the JDK compiles a single source file itself): key to PKCS#8 PEM.
_PEM_KEY_JAVA = """\
import java.io.FileInputStream;
import java.security.Key;
import java.security.KeyStore;
import java.util.Base64;

public class PemKey {
    public static void main(String[] args) throws Exception {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(args[0])) {
            store.load(in, args[1].toCharArray());
        }
        Key key = store.getKey(args[2], args[1].toCharArray());
        String body = Base64.getMimeEncoder(64, "\\n".getBytes()).encodeToString(key.getEncoded());
        System.out.println("-----BEGIN PRIVATE KEY-----\\n" + body);
        System.out.println("-----END PRIVATE KEY-----");
    }
}
"""
