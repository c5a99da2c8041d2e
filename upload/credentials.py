"""The endpoint's API token, kept only in the operating system's keyring.

The token is never written to a file, a log or an error message: the keyring (Windows Credential
Manager, macOS Keychain, Secret Service on Linux) is the only place it lives at rest, and
:class:`TokenStore` hands it to the upload client in memory only.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import keyring
import keyring.errors

from upload.errors import CredentialError

__all__ = ["DEFAULT_SERVICE", "TokenStore", "endpoint_account", "is_acceptable_token"]

logger = logging.getLogger(__name__)

DEFAULT_SERVICE = "obdtool"
"""Keyring service name under which every obdtool token is filed."""

_MAX_TOKEN = 4096


def endpoint_account(url: str) -> str:
    """The keyring account for an endpoint: its host, plus the port when one is given.

    Keying by host (not the full URL) keeps one token per manufacturer server even if the path changes; the
    port keeps two local test receivers apart.

    :raises CredentialError: the URL has no host.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        raise CredentialError("The endpoint address has no host name, so no token can be looked up for it.")
    try:
        port = parts.port
    except ValueError as exc:
        raise CredentialError("The endpoint address has an invalid port number.") from exc
    return f"{host}:{port}" if port is not None else host


def is_acceptable_token(token: str) -> bool:
    """Whether a token can be sent in an HTTP header: printable ASCII, no spaces, not empty, not huge.

    Checked on the way into the keyring and into the client, so a pasted line break cannot split a header.
    """
    return 0 < len(token) <= _MAX_TOKEN and all(33 <= ord(char) <= 126 for char in token)


class TokenStore:
    """The API token of one endpoint in the OS keyring.

    :param account: the endpoint's host (see :func:`endpoint_account`).
    :param service: keyring service name; the default files every obdtool token together.
    """

    def __init__(self, account: str, service: str = DEFAULT_SERVICE) -> None:
        if not account:
            raise CredentialError("A token store needs the endpoint's host name.")
        self.account = account
        self.service = service

    @classmethod
    def for_endpoint(cls, url: str, service: str = DEFAULT_SERVICE) -> TokenStore:
        """The store for the endpoint at ``url`` (account derived by :func:`endpoint_account`)."""
        return cls(endpoint_account(url), service)

    def get(self) -> str | None:
        """Return the stored token, or ``None`` when none is stored for this endpoint.

        :raises CredentialError: the keyring is missing or refused access.
        """
        try:
            token = keyring.get_password(self.service, self.account)
        except keyring.errors.KeyringError as exc:
            raise self._keyring_error("read the API token", exc) from exc
        return token if isinstance(token, str) and token else None

    def require(self) -> str:
        """Return the stored token, or explain how to store one.

        :raises CredentialError: no token stored, or the keyring is unusable.
        """
        token = self.get()
        if token is None:
            raise CredentialError(f"No API token is stored for {self.account}; store one first.")
        return token

    def set(self, token: str) -> None:
        """Store (or replace) the token in the keyring.

        :raises CredentialError: the token is unusable in an HTTP header, or the keyring is unusable.
        """
        if not isinstance(token, str) or not is_acceptable_token(token):
            raise CredentialError(
                "The API token is not usable: it must be non-empty printable ASCII without spaces or "
                "line breaks."
            )
        try:
            keyring.set_password(self.service, self.account, token)
        except keyring.errors.KeyringError as exc:
            raise self._keyring_error("store the API token", exc) from None
        logger.info("Stored the API token for %s in the system keyring", self.account)

    def delete(self) -> bool:
        """Remove the token; returns ``False`` when there was none.

        :raises CredentialError: the keyring is missing or refused access.
        """
        try:
            if keyring.get_password(self.service, self.account) is None:
                return False
            keyring.delete_password(self.service, self.account)
        except keyring.errors.PasswordDeleteError:
            return False
        except keyring.errors.KeyringError as exc:
            raise self._keyring_error("delete the API token", exc) from exc
        logger.info("Deleted the API token for %s from the system keyring", self.account)
        return True

    def _keyring_error(self, action: str, exc: keyring.errors.KeyringError) -> CredentialError:
        if isinstance(exc, keyring.errors.NoKeyringError):
            return CredentialError(
                f"Could not {action} for {self.account}: this computer has no usable password store "
                f"(keyring). Install or unlock one (e.g. Secret Service on Linux) and try again."
            )
        return CredentialError(
            f"Could not {action} for {self.account}: the system keyring refused ({type(exc).__name__})."
        )

    def __repr__(self) -> str:
        return f"TokenStore(account={self.account!r}, service={self.service!r})"
