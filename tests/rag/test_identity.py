"""Users, keys and grants (``rag.identity``) and the decisions on them (``rag.policy``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rag.identity import AuthError, IdentityError, IdentityStore
from rag.policy import AccessDenied, Principal, auth_required, can, folder_allowed, readable, retrieval_filters


@pytest.fixture
def ids(tmp_path: Path) -> IdentityStore:
    return IdentityStore(tmp_path / "identity.sqlite")


def test_passwords_are_argon2_hashes_and_keys_are_stored_hashed(ids: IdentityStore) -> None:
    ids.add_user("alice", "correct horse battery", role="editor", groups=["HR", "finance"])
    key = ids.create_key("alice", "laptop")
    raw = sqlite3.connect(ids.path)
    stored_hash = raw.execute("SELECT password_hash FROM users").fetchone()[0]
    digest = raw.execute("SELECT digest FROM api_keys").fetchone()[0]
    assert stored_hash.startswith("$argon2id$") and "correct horse" not in stored_hash
    assert key.secret.startswith("rag_") and len(key.secret) > 40 and key.secret not in digest
    assert ids.keys("alice")[0].secret == ""  # never shown again
    assert ids.authenticate("alice", "correct horse battery").groups == frozenset({"hr", "finance"})
    assert ids.principal_for_key(key.secret).name == "alice"
    assert ids.keys("alice")[0].last_used is not None
    assert oct(ids.path.stat().st_mode & 0o777) == "0o600"


def test_wrong_credentials_say_the_same_thing_and_lock_after_five(ids: IdentityStore) -> None:
    ids.add_user("bob", "a good long password")
    messages = set()
    for name in ("bob", "nobody"):
        with pytest.raises(AuthError) as e:
            ids.authenticate(name, "wrong password!")
        messages.add(str(e.value))
    assert len(messages) == 1  # whether the user exists is not told
    for _ in range(4):
        with pytest.raises(AuthError):
            ids.authenticate("bob", "wrong password!")
    with pytest.raises(AuthError):  # locked now, even with the right password
        ids.authenticate("bob", "a good long password")
    ids.update_user("bob", password="a new long password")  # an admin resets it: unlocked
    assert ids.authenticate("bob", "a new long password").name == "bob"


def test_revoked_malformed_and_disabled_keys_fail(ids: IdentityStore) -> None:
    ids.add_user("carol", None, role="reader")
    key = ids.create_key("carol")
    for bad in ("", "rag_", "Bearer x", key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B"), "rag_zz_zz"):
        with pytest.raises(AuthError):
            ids.principal_for_key(bad)
    ids.update_user("carol", disabled=True)
    with pytest.raises(AuthError):
        ids.principal_for_key(key.secret)
    ids.update_user("carol", disabled=False)
    assert ids.revoke_key(key.id) and not ids.revoke_key(key.id)
    with pytest.raises(AuthError):
        ids.principal_for_key(key.secret)
    with pytest.raises(AuthError):  # no password: no web sign-in
        ids.authenticate("carol", "anything at all")


def test_grants_to_users_and_groups_and_bad_input(ids: IdentityStore) -> None:
    ids.add_user("dan", "a good long password", role="editor", groups=["sales"])
    ids.grant("dan", "papers", "reader")
    ids.grant("@sales", "papers", "editor")  # the group's grant is higher: it wins
    ids.grant("@sales", "crm", "reader")
    p = ids.principal("dan")
    assert dict(p.grants) == {"papers": "editor", "crm": "reader"}
    assert can(p, "write", "papers") and not can(p, "write", "crm") and not can(p, "read", "hr")
    with pytest.raises(IdentityError):
        ids.add_user("dan", "another good password")
    with pytest.raises(IdentityError):
        ids.add_user("eve", "short")
    with pytest.raises(IdentityError):
        ids.add_user("../eve", "a good long password")
    with pytest.raises(IdentityError):
        ids.grant("dan", "papers", "admin")
    with pytest.raises(IdentityError):
        ids.grant("nobody", "papers", "reader")
    ids.remove_user("dan")
    assert ids.grants("dan") == [] and ids.keys("dan") == []


def test_policy_roles_cap_grants_and_filters_carry_groups() -> None:
    reader = Principal("r", "reader", frozenset({"hr"}), {"*": "editor"})
    assert can(reader, "read", "anything") and not can(reader, "write", "anything")  # the role caps the grant
    assert readable(reader, ["b", "a"]) == ["a", "b"]
    assert retrieval_filters(reader, {"groups": ["finance"], "page": [1]}) == {"page": [1], "groups": ["hr"]}
    admin = Principal("a", "admin")
    assert retrieval_filters(admin) is None and can(admin, "admin")
    assert retrieval_filters(Principal.local(), {"file_type": "pdf"}) == {"file_type": "pdf"}
    assert auth_required("auto", "0.0.0.0") and not auth_required("auto", "127.0.0.1")
    assert not auth_required("auto", "::1") and auth_required("auto", "192.168.1.5")


def test_folder_allowed_resolves_before_checking(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    assert folder_allowed(root / "docs", [root]) == (root / "docs").resolve()
    for bad in (root / ".." / "root2", root / "link", "/etc", root / "docs" / ".." / ".."):
        with pytest.raises(AccessDenied):
            folder_allowed(bad, [root])
    with pytest.raises(AccessDenied, match="none are configured"):
        folder_allowed(root, [])
