import django.db.models.deletion
from django.db import migrations, models

# Only the two indexes go: Django's AlterField would also drop and re-add both foreign keys,
# which re-checks every event under a lock.
INDEXES = {"contact_id": "delivery_event_contact_id_d5455971", "message_id": "delivery_event_message_id_cd73f983"}


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0005_message_variant"),
        ("subscribers", "0005_consent_records_index_only_composites"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f"DROP INDEX IF EXISTS {name}",
                    reverse_sql=f"CREATE INDEX {name} ON delivery_event ({column})",
                )
                for column, name in INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="contact",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="subscribers.contact",
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="message",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="delivery.message",
                    ),
                ),
            ],
        )
    ]
