"""The API token lives in the keyring only, and errors about it are sentences without the token."""

from __future__ import annotations

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest
from upload_support import MemoryKeyring

from upload.credentials import DEFAULT_SERVICE, TokenStore, endpoint_account, is_acceptable_token
from upload.errors import CredentialError

SECRET = "s3cr3t-token-0123456789abcdef"


def test_round_trip(memory_keyring: MemoryKeyring) -> None:
    store = TokenStore.for_endpoint("https://records.example.com/api")
    assert store.account == "records.example.com"
    assert store.get() is None
    store.set(SECRET)
    assert memory_keyring.passwords == {(DEFAULT_SERVICE, "records.example.com"): SECRET}
    assert store.get() == SECRET
    assert store.require() == SECRET
    assert store.delete() is True
    assert store.delete() is False
    assert store.get() is None


def test_tokens_are_kept_per_endpoint(memory_keyring: MemoryKeyring) -> None:
    TokenStore("a.example.com").set("token-a")
    TokenStore("b.example.com").set("token-b")
    TokenStore("a.example.com", service="obdtool-test").set("token-c")
    assert TokenStore("a.example.com").get() == "token-a"
    assert TokenStore("b.example.com").get() == "token-b"
    assert TokenStore("a.example.com", service="obdtool-test").get() == "token-c"


def test_missing_token_is_explained(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(CredentialError, match=r"No API token is stored for records\.example\.com"):
        TokenStore("records.example.com").require()


@pytest.mark.parametrize("bad", ["", "two words", "line\nbreak", "tab\there", "ümlaut", "x" * 5000])
def test_unusable_tokens_are_refused_without_echo(memory_keyring: MemoryKeyring, bad: str) -> None:
    assert not is_acceptable_token(bad)
    with pytest.raises(CredentialError) as caught:
        TokenStore("records.example.com").set(bad)
    if bad:
        assert bad not in str(caught.value)
    assert memory_keyring.passwords == {}


def test_no_keyring_backend() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        store = TokenStore("records.example.com")
        for call in (store.get, lambda: store.set(SECRET), store.delete):
            with pytest.raises(CredentialError, match="no usable password store") as caught:
                call()
            assert SECRET not in str(caught.value)
            assert str(caught.value).endswith(".")
    finally:
        keyring.set_keyring(previous)


class LockedKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("the keyring is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError(f"cannot store {password}")

    def delete_password(self, service: str, username: str) -> None:
        raise keyring.errors.KeyringLocked("the keyring is locked")


def test_keyring_errors_become_credential_errors() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(LockedKeyring())
    try:
        store = TokenStore("records.example.com")
        with pytest.raises(CredentialError, match="KeyringLocked"):
            store.get()
        with pytest.raises(CredentialError) as caught:
            store.set(SECRET)
        # The backend's own message happened to contain the token: it is neither shown nor chained.
        assert SECRET not in str(caught.value)
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        with pytest.raises(CredentialError):
            store.delete()
    finally:
        keyring.set_keyring(previous)


def test_repr_never_shows_the_token(memory_keyring: MemoryKeyring) -> None:
    store = TokenStore("records.example.com")
    store.set(SECRET)
    assert SECRET not in repr(store)
    assert SECRET not in str(store)
    assert "records.example.com" in repr(store)


@pytest.mark.parametrize(
    ("url", "account"),
    [
        ("https://Records.Example.com/", "records.example.com"),
        ("https://records.example.com:8443/x", "records.example.com:8443"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://[::1]:8443", "::1:8443"),
    ],
)
def test_endpoint_account(url: str, account: str) -> None:
    assert endpoint_account(url) == account


@pytest.mark.parametrize("url", ["", "records.example.com", "https://", "https://host:notaport"])
def test_endpoint_account_needs_a_host(url: str) -> None:
    with pytest.raises(CredentialError):
        endpoint_account(url)
