from django.db import migrations


def create_default_org(apps, schema_editor):
    Organization = apps.get_model("agents", "Organization")
    Organization.objects.get_or_create(id="default", defaults={"name": "Default organization"})


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]
    operations = [migrations.RunPython(create_default_org, migrations.RunPython.noop)]
