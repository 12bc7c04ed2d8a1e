"""The product builds as a wheel with its data files and without the lab."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(  # noqa: S603 - our own tools on our own files
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", out, ROOT)
    (built,) = out.glob("aftersales_hub-*.whl")
    return built


def test_the_wheel_carries_the_product_and_its_data_but_not_the_lab(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if "/" in name and ".dist-info" not in name}
    assert packages == {
        "hub",
        "intake",
        "dispatch",
        "repair",
        "notify",
        "tracker",
        "gateway",
        "ingress",
        "insurance",
    }
    assert not [name for name in names if name.startswith(("lab/", "simulators/"))]
    assert {"hub/data/partners.yaml", "hub/data/sla.yaml", "hub/data/refunds.yaml"} <= set(names)
    schemas = [name for name in names if name.startswith("hub/data/schemas/")]
    assert len(schemas) == len(list((ROOT / "schemas").rglob("*.json")))


def test_the_installed_wheel_runs_hub_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", environment)
    # The dependencies come from this test's environment, the product only from the wheel: a
    # .pth line adds a directory but runs none of its .pth files (the editable install's).
    site = Path(
        run(
            environment / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", environment / "bin" / "python", "install",
        "--no-deps", "--quiet", wheel)  # fmt: skip
    hub = environment / "bin" / "hub"
    elsewhere = tmp_path  # not the repository: nothing of the source tree is on the path

    assert "run" in run(hub, "--help", cwd=elsewhere)
    assert "webhook-port" in run(hub, "run", "intake", "--help", cwd=elsewhere)
    assert "OK, " in run(hub, "schemas", "check", cwd=elsewhere)
    probe = (
        "import importlib.util as u, dispatch.partners as p; "
        "print(u.find_spec('lab'), len(p.load_partners().couriers))"
    )
    assert run(environment / "bin" / "python", "-c", probe, cwd=elsewhere).split() == ["None", "3"]
