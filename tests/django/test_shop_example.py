"""examples/django_shop checks clean under the Django version installed (6.0 in `make test`'s rerun)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHOP = Path(__file__).parents[2] / "examples" / "django_shop"


def test_the_shop_example_loads_its_tasks_on_this_django(tmp_path: Path) -> None:
    env = {**os.environ, "SHOP_DIR": str(tmp_path), "PYTHONPATH": str(SHOP.parents[1] / "src")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); import shop.tasks, shop.views"],
        cwd=SHOP,
        env={**env, "DJANGO_SETTINGS_MODULE": "shopsite.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=SHOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
