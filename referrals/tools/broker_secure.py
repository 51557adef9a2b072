"""`referrals broker start --secure`: the local broker (or cluster) with authentication,
encryption and authorisation.

- Clients connect over SASL_SSL with SCRAM-SHA-512: TLS with a certificate signed by a CA made
  for this data folder, then a password. The controller listener is TLS with client
  certificates required: only a process holding the broker's key (the nodes themselves) gets
  in, as the super user `CN=referrals-broker`.
- The StandardAuthorizer decides every request; nothing is allowed without an ACL
  (`referrals acl apply` sets the contract's) except to the super users: `admin` (topics, ACLs,
  the brokers' own traffic between each other) and the nodes' certificate.
- One SCRAM user per service and user kind (`referrals.contract.acls.PRINCIPALS`) and `admin`,
  created when the storage is formatted (KIP-900, `kafka-storage format --add-scram`), with
  random passwords.

Everything lives in `<data dir>/security/` (mode 0700; for a cluster, the cluster's folder,
shared by its nodes): the CA (`ca.p12`, and `ca.pem` for clients), the nodes' key and
certificate with the CA beside it (`broker.p12`, also their trust store), `credentials.json`
(every password, mode 0600) and one `<principal>.env` per principal (mode 0600) holding the
`KAFKA_*` settings every process of the project reads, so a service runs as its own principal
with `env $(cat .local/kafka/security/rewards.env) referrals run rewards`. Certificates and keys
come from the JDK's keytool (Java runs the broker anyway); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from referrals.contract.acls import ADMIN, PRINCIPALS
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import KafkaSettings

FOLDER = "security"
MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_SSL"
BROKER_DN = "CN=referrals-broker"  # the nodes' certificate: their principal on the controller
SUPER_USERS = f"User:{ADMIN};User:{BROKER_DN}"
VALID_DAYS = "3650"


class BrokerConfig(Protocol):
    """What this module needs of a `referrals.tools.broker.BrokerConfig` (the whole cluster's,
    not one node's view)."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def host(self) -> str: ...

    @property
    def bootstrap(self) -> str: ...

    @property
    def secure(self) -> bool: ...


class SecurityError(ReferralsError):
    reason = "BROKER_SECURITY"


@dataclass(frozen=True)
class Material:
    """The secured broker's CA, keys and passwords in `folder`."""

    folder: Path

    @property
    def ca_pem(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def credentials_file(self) -> Path:
        return self.folder / "credentials.json"

    def exists(self) -> bool:
        return self.credentials_file.exists()

    def _credentials(self) -> dict[str, object]:
        try:
            data = json.loads(self.credentials_file.read_text())
        except (OSError, ValueError) as err:
            raise SecurityError(f"cannot read {self.credentials_file}: {err}") from err
        return dict(data)

    @property
    def store_password(self) -> str:
        return str(self._credentials()["store_password"])

    def password(self, principal: str) -> str:
        users = self._credentials()["users"]
        assert isinstance(users, dict)
        if principal not in users:
            known = ", ".join(sorted(users))
            raise SecurityError(f"no SCRAM user {principal!r} in {self.credentials_file}: {known}")
        return str(users[principal])

    def env_file(self, principal: str) -> Path:
        return self.folder / f"{principal}.env"


def material(cfg: BrokerConfig) -> Material:
    """Where the (cluster's) security material lives: `<data dir>/security`."""
    return Material(cfg.data_dir / FOLDER)


def secured(cfg: BrokerConfig) -> bool:
    """Whether the broker in `cfg.data_dir` is (to be) a secured one: `--secure` asked for it or
    its data folder already holds the material (a secured broker restarts secured)."""
    return cfg.secure or material(cfg).exists()


def ensure(cfg: BrokerConfig, formatted: bool) -> Material:
    """The material for `cfg`, made on first use; the env files written again (the port may
    have changed). `formatted`: some node's storage already exists, so a broker that was
    started without --secure cannot be turned into a secured one here."""
    mat = material(cfg)
    if not mat.exists():
        if formatted:
            raise SecurityError(
                f"{cfg.data_dir} holds a broker started without --secure; secure a fresh data "
                "folder (--data-dir) or remove this one"
            )
        _make(cfg, mat)
    for principal in (*PRINCIPALS, ADMIN):
        _write_private(mat.env_file(principal), env_text(cfg, mat, principal))
    return mat


def _make(cfg: BrokerConfig, mat: Material) -> None:
    mat.folder.mkdir(parents=True, exist_ok=True)
    mat.folder.chmod(0o700)
    store = secrets.token_hex(16)
    # Hex passwords: nothing in them that the format tool's `[name=..,password=..]` syntax,
    # a properties file or a JAAS string would read specially.
    users = {name: secrets.token_hex(24) for name in (ADMIN, *PRINCIPALS)}
    _certificates(cfg, mat, store)
    _write_private(
        mat.credentials_file,
        json.dumps({"store_password": store, "users": users}, indent=2) + "\n",
    )


def _keytool() -> str:
    found = shutil.which("keytool")
    java = shutil.which("java")
    if found is None and java is not None:
        beside = Path(java).resolve().parent / "keytool"
        found = str(beside) if beside.exists() else None
    if found is None:
        raise SecurityError("keytool (the JDK's) is not on PATH; it makes the broker's CA")
    return found


def _run(*args: str) -> None:
    proc = subprocess.run([_keytool(), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SecurityError(f"keytool {args[0]} failed: {proc.stdout}{proc.stderr}")


def _san(cfg: BrokerConfig) -> str:
    names = {"dns:localhost", "ip:127.0.0.1"}
    host = cfg.host
    names.add(f"ip:{host}" if host.replace(".", "").isdigit() or ":" in host else f"dns:{host}")
    return "SAN=" + ",".join(sorted(names))


def _certificates(cfg: BrokerConfig, mat: Material, store: str) -> None:
    """A CA, and the nodes' EC key with a certificate it signed (server and client use, for
    every name clients reach the nodes by), in PKCS12 stores protected by `store`."""
    ca = mat.folder / "ca.p12"
    common = ["-storetype", "PKCS12", "-storepass", store, "-keypass", store]
    keypair = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", VALID_DAYS]
    _run(
        "-genkeypair", "-alias", "ca", "-dname", "CN=referrals local CA", *keypair,
        "-ext", "bc:c=ca:true", "-ext", "ku:c=keyCertSign,cRLSign", "-keystore", str(ca), *common,
    )  # fmt: skip
    _run("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca), "-file", str(mat.ca_pem),
         *common)  # fmt: skip
    ks = str(mat.keystore)
    _run("-genkeypair", "-alias", "broker", "-dname", BROKER_DN, *keypair, "-keystore", ks,
         *common)  # fmt: skip
    csr, crt = mat.folder / "broker.csr", mat.folder / "broker.crt"
    _run("-certreq", "-alias", "broker", "-keystore", ks, "-file", str(csr), *common)
    _run(
        "-gencert", "-alias", "ca", "-keystore", str(ca), "-infile", str(csr),
        "-outfile", str(crt), "-rfc", "-validity", VALID_DAYS, "-ext", _san(cfg),
        "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth,clientAuth",
        *common,
    )  # fmt: skip
    _run("-importcert", "-noprompt", "-alias", "ca", "-file", str(mat.ca_pem), "-keystore", ks,
         *common)  # fmt: skip
    _run("-importcert", "-alias", "broker", "-file", str(crt), "-keystore", ks, *common)
    csr.unlink()
    for path in (ca, mat.keystore, mat.ca_pem, crt):
        path.chmod(0o600 if path.suffix == ".p12" else 0o644)


def _write_private(path: Path, text: str) -> None:
    """Writes `text` to a file only its owner can read, never readable by others meanwhile."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def properties(mat: Material) -> dict[str, str]:
    """What a node's server.properties adds to listen securely (beside its listener names)."""
    store = mat.store_password
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{mat.password(ADMIN)}";'
    )
    return {
        "listener.security.protocol.map": f"CONTROLLER:SSL,{PROTOCOL}:{PROTOCOL}",
        "inter.broker.listener.name": PROTOCOL,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{PROTOCOL.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        # One key and certificate for every node (one host), the CA beside it as trust.
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(mat.keystore),
        "ssl.keystore.password": store,
        "ssl.key.password": store,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(mat.keystore),
        "ssl.truststore.password": store,
        # The controllers talk only to holders of the nodes' key (their own certificate).
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": SUPER_USERS,
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_arguments(mat: Material) -> list[str]:
    """`kafka-storage format` arguments creating every SCRAM user (KIP-900)."""
    out = []
    for name in (ADMIN, *PRINCIPALS):
        out.append(f"--add-scram={MECHANISM}=[name={name},password={mat.password(name)}]")
    return out


def client_settings(cfg: BrokerConfig, principal: str, topic_prefix: str = "") -> KafkaSettings:
    """How `principal` reaches the secured broker `cfg` (what its .env file says)."""
    mat = material(cfg)
    return KafkaSettings(
        bootstrap_servers=cfg.bootstrap,
        security_protocol=PROTOCOL,
        sasl_mechanism=MECHANISM,
        sasl_username=principal,
        sasl_password=mat.password(principal),
        ssl_cafile=str(mat.ca_pem),
        topic_prefix=topic_prefix,
    )


def env_text(cfg: BrokerConfig, mat: Material, principal: str) -> str:
    lines = {
        "KAFKA_BOOTSTRAP_SERVERS": cfg.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": PROTOCOL,
        "KAFKA_SASL_MECHANISM": MECHANISM,
        "KAFKA_SASL_USERNAME": principal,
        "KAFKA_SASL_PASSWORD": mat.password(principal),
        "KAFKA_SSL_CAFILE": str(mat.ca_pem),
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def env_of(cfg: BrokerConfig, principal: str) -> dict[str, str]:
    """`principal`'s KAFKA_* variables, as its .env file holds them."""
    text = env_text(cfg, material(cfg), principal)
    return dict(line.split("=", 1) for line in text.splitlines())
