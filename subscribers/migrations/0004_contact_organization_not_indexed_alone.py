# Contact.organization is not indexed alone: contact_email_unique_per_org and
# contact_org_status_idx lead with it, and every contact written paid for a third index.
# The index is dropped by name: AlterField would also drop and re-add the foreign key,
# re-checking every contact under a lock.

import django.db.models.deletion
from django.db import migrations, models

INDEX = "subscribers_contact_organization_id_85f3ef1b"


class Migration(migrations.Migration):
    dependencies = [
        ("organizations", "0003_deliverability_policies"),
        ("subscribers", "0003_consent_and_subscribe_forms"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="contact",
                    name="organization",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="organizations.organization",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f"CREATE INDEX {INDEX} ON subscribers_contact (organization_id)",
                ),
            ],
        ),
    ]
