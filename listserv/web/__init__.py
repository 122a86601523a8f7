"""The web: the archive's pages, search, sign-in by emailed link, one-click unsubscribe."""
