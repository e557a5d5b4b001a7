"""Move DRF's plaintext tokens (rest_framework.authtoken, table authtoken_token) to knox digests.

Each existing key is hashed exactly as knox hashes a token it issued (knox.crypto.hash_token, the first
TOKEN_KEY_LENGTH characters kept to find the row), so devices keep working with the key they have. The moved
tokens expire CAD_TOKEN_TTL_DAYS after the upgrade. Then the plaintext table is dropped, and Django's record
of its migrations with it. A fresh database has no such table: nothing to do.
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone


def move_plaintext_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    AuthToken = apps.get_model("knox", "AuthToken")
    days = getattr(settings, "CAD_TOKEN_TTL_DAYS", 365)
    expiry = timezone.now() + timedelta(days=days) if days > 0 else None
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id FROM authtoken_token")
        rows = cursor.fetchall()
    AuthToken.objects.bulk_create(
        [
            AuthToken(
                digest=hash_token(key),
                token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
                user_id=user_id,
                expiry=expiry,
            )
            for key, user_id in rows
        ],
        ignore_conflicts=True,
    )
    schema_editor.execute("DROP TABLE authtoken_token")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_user_language"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        # Not reversible in substance: the plaintext keys are gone (going back, re-issue the tokens).
        migrations.RunPython(move_plaintext_tokens, migrations.RunPython.noop),
    ]
