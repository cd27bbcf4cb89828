#!/usr/bin/env bash
# Start the local Label Studio for tagqa (what `make labelstudio` runs), in the foreground.
#
# Settings come from the environment, else from tagqa's settings (tagqa.env, then its defaults):
#   LABEL_STUDIO_USERNAME, LABEL_STUDIO_PASSWORD  the local admin (created on first start)
#   LABEL_STUDIO_API_TOKEN                        the admin's API token (legacy token, >= 6 characters)
#   LABEL_STUDIO_PORT                             default 8080; it listens on 127.0.0.1 only
#   LABEL_STUDIO_DATA_DIR                         default .tagqa/labelstudio/data
#   LABEL_STUDIO_VENV                             default .tagqa/labelstudio/venv (make labelstudio-install)
#   LABEL_STUDIO_TEMPLATE_DB                      default <venv>/../template/label_studio.sqlite3, a migrated
#                                                 empty database copied into a new data folder
# Legacy token authentication is switched on (it is off by default since Label Studio 1.22)
# so the pipeline can use the fixed token; sync_admin.py re-applies the admin settings on
# every start after the first. No browser, no version check against PyPI, no analytics.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Whatever the environment lacks comes from tagqa's settings (tagqa.env, then the defaults in
# tagqa_assets/settings.py), the same values the labelstudio labeling backend uses.
NAMES=(LABEL_STUDIO_USERNAME LABEL_STUDIO_PASSWORD LABEL_STUDIO_API_TOKEN LABEL_STUDIO_PORT)
for name in "${NAMES[@]}"; do
  if [[ -z "${!name:-}" ]]; then
    TAGQA="${TAGQA:-$REPO/.venv/bin/tagqa}"
    [[ -x "$TAGQA" ]] || TAGQA=$(command -v tagqa) || { echo "set ${NAMES[*]} or install tagqa (make setup)" >&2; exit 1; }
    eval "$("$TAGQA" settings shell "${NAMES[@]}")"
    break
  fi
done

: "${LABEL_STUDIO_USERNAME:?set LABEL_STUDIO_USERNAME (an e-mail address)}"
: "${LABEL_STUDIO_PASSWORD:?set LABEL_STUDIO_PASSWORD}"
: "${LABEL_STUDIO_API_TOKEN:?set LABEL_STUDIO_API_TOKEN}"
PORT="${LABEL_STUDIO_PORT:-8080}"
DATA_DIR="${LABEL_STUDIO_DATA_DIR:-$REPO/.tagqa/labelstudio/data}"
VENV="${LABEL_STUDIO_VENV:-$REPO/.tagqa/labelstudio/venv}"

if [[ ! -x "$VENV/bin/label-studio" ]]; then
  echo "Label Studio is not installed in $VENV: run 'make labelstudio-install'" >&2
  exit 1
fi
if (( ${#LABEL_STUDIO_API_TOKEN} < 6 )); then
  echo "LABEL_STUDIO_API_TOKEN must have at least 6 characters (Label Studio ignores shorter ones)" >&2
  exit 1
fi

mkdir -p "$DATA_DIR"
export LABEL_STUDIO_BASE_DATA_DIR="$DATA_DIR"
export LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false DISABLE_SIGNUP_WITHOUT_LINK=true
# Label Studio reads LABEL_STUDIO_PORT itself and would pick the next free port when it is
# taken; the explicit --port below plus this check keep the address predictable.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT on 127.0.0.1 is already in use (another Label Studio?); set LABEL_STUDIO_PORT" >&2
  exit 1
fi

TEMPLATE_DB="${LABEL_STUDIO_TEMPLATE_DB:-$(dirname "$VENV")/template/label_studio.sqlite3}"
if [[ -f "$DATA_DIR/label_studio.sqlite3" ]]; then
  "$VENV/bin/python" "$REPO/deploy/labelstudio/sync_admin.py"
elif [[ -f "$TEMPLATE_DB" ]]; then
  # An already migrated empty database (make labelstudio-install): saves ~20 s of migrations.
  cp "$TEMPLATE_DB" "$DATA_DIR/label_studio.sqlite3"
fi

echo "Label Studio on http://127.0.0.1:$PORT (user $LABEL_STUDIO_USERNAME, data in $DATA_DIR)"
exec "$VENV/bin/label-studio" start \
  --no-browser \
  --internal-host 127.0.0.1 \
  --host "http://127.0.0.1:$PORT" \
  --port "$PORT" \
  --username "$LABEL_STUDIO_USERNAME" \
  --password "$LABEL_STUDIO_PASSWORD" \
  --user-token "$LABEL_STUDIO_API_TOKEN" \
  --enable-legacy-api-token
