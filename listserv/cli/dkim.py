"""`listserv dkim keygen`: a signing key and its DNS record."""

from __future__ import annotations

from pathlib import Path

import click

from listserv.cli.common import (
    Context,
    fail,
    pass_ctx,
)


@click.group()
def dkim() -> None:
    """DKIM keys for signing everything listserv sends."""


@dkim.command("keygen")
@click.option("--selector", required=True, help="E.g. ls2026; the key is published under it.")
@click.option("--domain", required=True, help="The signing domain, e.g. lists.example.org.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Key file (default: [dkim] private_key_file when set, else "
    "dkim/SELECTOR.DOMAIN.pem next to the config).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing key file (mail signed with it stops verifying once "
    "its DNS record changes).",
)
@pass_ctx
def dkim_keygen(ctx: Context, selector: str, domain: str, out: str | None, force: bool) -> None:
    """Write a 2048-bit private key and print the DNS TXT record to publish."""
    from listserv.core.addresses import try_normalize
    from listserv.outbound import keys, signing

    if not selector.replace("-", "").replace("_", "").isalnum() or "." in selector:
        fail(f"invalid selector {selector!r}: use letters, digits, '-' and '_'")
    if try_normalize(f"x@{domain}") is None:
        fail(f"invalid domain {domain!r}")
    config = ctx.config
    if out:
        path = Path(out)
    elif config.dkim.private_key_file:
        path = config.dkim_key_path
    else:
        path = config.base_dir / "dkim" / f"{selector}.{domain}.pem"
    pem, der = keys.generate()
    try:
        keys.write_private(path, pem, replace=force)
    except FileExistsError:
        fail(f"{path} exists; keep it, choose another --out, or replace it with --force")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    click.echo(f"wrote {path}\n")
    click.echo("Publish this DNS record:\n")
    click.echo(signing.dns_record(selector, domain, der))
    click.echo("\nThen set in the config:\n")
    click.echo(f'[dkim]\nselector = "{selector}"\ndomain = "{domain}"\nprivate_key_file = "{path}"')
