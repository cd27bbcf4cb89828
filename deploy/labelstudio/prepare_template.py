"""Build an empty, fully migrated Label Studio database once (run with Label Studio's own python).

A fresh data folder spends most of Label Studio's first start (~20 of ~30 s here) applying
Django migrations. ``start.sh`` copies this template into a data folder that has no
database yet, so first starts (and every test session) skip that work. The template holds
no user, organization or secret key: those are made by the start that uses the copy.
Usage: LABEL_STUDIO_BASE_DATA_DIR=<empty folder> python prepare_template.py
"""

import os
import sys
from pathlib import Path

from label_studio.server import _apply_database_migrations, _setup_env


def main() -> int:
    folder = Path(os.environ["LABEL_STUDIO_BASE_DATA_DIR"])
    _setup_env()
    _apply_database_migrations()
    database = folder / "label_studio.sqlite3"
    if not database.is_file():
        print(f"no database was created in {folder}", file=sys.stderr)
        return 1
    # The secret key belongs to each data folder, never to a shared template.
    (folder / ".env").unlink(missing_ok=True)
    print(f"migrated template database: {database} ({database.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
