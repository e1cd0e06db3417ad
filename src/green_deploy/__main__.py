"""Run the project as ``python -m green_deploy`` or ``green-deploy`` (same as ``kedro run``);
``green-deploy compare BASELINE CANDIDATE`` compares two studies (``cli.compare``)."""

import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs) -> Any:
    if sys.argv[1:2] == ["compare"]:
        from green_deploy.cli import compare

        return compare.main(sys.argv[2:], prog_name="green-deploy compare")
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
