"""`hub deploy render|check`: Kubernetes manifests and a compose file from the declarations."""

from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer

from hub.core.settings import HubSettings
from hub.deployment import Store, Target, check, render, write

deploy_app = typer.Typer(
    help="Deployments, Strimzi topics and users, KEDA autoscaling, a compose file (deploy/).",
    no_args_is_help=True,
)
DirectoryOption = Annotated[
    Path,
    typer.Option("--dir", help="Where k8s/ and compose.yaml live.", file_okay=False),
]
ImageOption = Annotated[
    str | None,
    typer.Option(help="Image of the services; unset: aftersales-hub:<this version>."),
]
ClusterOption = Annotated[
    str, typer.Option(help="Name of the Strimzi `Kafka` resource the topics and users belong to.")
]
StoreOption = Annotated[
    Store,
    typer.Option(help="State store the services use: on sqlite each group stays one replica."),
]
DEFAULT_DIRECTORY = Path("deploy")


def _files(image: str | None, cluster: str, store: Store) -> dict[str, str]:
    target = Target(
        image=image or f"aftersales-hub:{package_version('aftersales-hub')}",
        cluster=cluster,
        store=store,
    )
    return render(HubSettings(), target)


@deploy_app.command("render")
def render_command(
    directory: DirectoryOption = DEFAULT_DIRECTORY,
    image: ImageOption = None,
    cluster: ClusterOption = "aftersales",
    store: StoreOption = Store.POSTGRESQL,
) -> None:
    """Write the files that changed."""
    written = write(_files(image, cluster, store), directory)
    for name in written:
        print(f"wrote {directory / name}")
    print(f"{directory}: {len(written)} file(s) written")


@deploy_app.command("check")
def check_command(
    directory: DirectoryOption = DEFAULT_DIRECTORY,
    image: ImageOption = None,
    cluster: ClusterOption = "aftersales",
    store: StoreOption = Store.POSTGRESQL,
) -> None:
    """Fail when a generated file is missing, stale or left over."""
    files = _files(image, cluster, store)
    problems = check(files, directory)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{directory}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    print(f"{directory}: OK, {len(files)} files in step with the declarations")
