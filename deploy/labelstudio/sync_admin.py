"""Make an existing Label Studio data folder match the configured admin (run with Label Studio's own python).

``label-studio start --username/--password/--user-token/--enable-legacy-api-token`` applies
those only when it creates the admin and the organization, i.e. on the very first start.
This script makes later starts honour changed settings too: it sets the admin's password
and legacy API token to LABEL_STUDIO_PASSWORD / LABEL_STUDIO_API_TOKEN and enables legacy
tokens for the admin's organization. Needs LABEL_STUDIO_BASE_DATA_DIR (the data folder).
"""

import os
import sys

import label_studio
from label_studio.server import _setup_env


def main() -> int:
    username = os.environ["LABEL_STUDIO_USERNAME"]
    password = os.environ["LABEL_STUDIO_PASSWORD"]
    token = os.environ["LABEL_STUDIO_API_TOKEN"]
    if len(token) < 6:
        print("LABEL_STUDIO_API_TOKEN must have at least 6 characters", file=sys.stderr)
        return 2
    _setup_env()
    from rest_framework.authtoken.models import Token
    from users.models import User

    user = User.objects.filter(email=username).first()
    if user is None:
        print(f"no user {username} in {os.environ['LABEL_STUDIO_BASE_DATA_DIR']}: label-studio start creates it")
        return 0
    if not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    Token.objects.filter(user=user).exclude(key=token).delete()
    Token.objects.get_or_create(user=user, key=token)
    organization = user.active_organization
    if organization is not None and not organization.jwt.legacy_api_tokens_enabled:
        organization.jwt.legacy_api_tokens_enabled = True
        organization.jwt.save(update_fields=["legacy_api_tokens_enabled"])
    print(f"Label Studio {label_studio.__version__}: admin {username} synced (password, API token, legacy tokens on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
