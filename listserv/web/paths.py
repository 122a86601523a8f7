"""Where a list and its posts live on the web; used by the pages and by the mail we send
(Archived-At, List-Archive). Pure."""

from __future__ import annotations


def list_name(list_address: str, domain: str) -> str:
    """A list's name in URLs: its local part on the configured domain, else its address."""
    local, _, list_domain = list_address.rpartition("@")
    return local if list_domain == domain.lower() else list_address


def list_address(name: str, domain: str) -> str:
    """The address a URL name stands for (the inverse of list_name)."""
    return name.lower() if "@" in name else f"{name.lower()}@{domain.lower()}"


def list_url(base_url: str, list_address: str, domain: str) -> str:
    return f"{base_url.rstrip('/')}/{list_name(list_address, domain)}/"


def post_url(base_url: str, list_address: str, domain: str, post_id: int) -> str:
    """The permalink of a post (RFC 5064 Archived-At): it redirects to the post in its thread."""
    return f"{list_url(base_url, list_address, domain)}p/{post_id}"


def list_archive(base_url: str, fallback: str, list_address: str, domain: str,
                 archive: str) -> str:
    """A list's List-Archive, in posts and digests alike: its page here when the web forum
    has a `base_url` and the list an archive (`archive` is not "none"), else the
    configured [lists] archive_url (which may be empty)."""
    if not base_url or archive == "none":
        return fallback
    return list_url(base_url, list_address, domain)
