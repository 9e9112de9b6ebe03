"""Loaded by pytest before Django (see `-p tests.testenv` in pyproject): the test run's configuration.

Tests never read the developer's `.env` (it may say DEMO_MODE=true) and never write one.
DATABASE_URL and REDIS_URL pass through, so CI can run the same suite on PostgreSQL and Redis.
"""

import os
import tempfile

os.environ["ENV_FILE"] = os.path.join(tempfile.gettempdir(), "comms-tests-no-such.env")
os.environ["SECRET_KEY"] = "test-secret-key-not-for-production"
os.environ["ORCHESTRATOR_TOKEN"] = "orch_test_orchestrator_token_0123456789"
os.environ["DEMO_MODE"] = "false"
os.environ["DEBUG"] = "true"
os.environ.setdefault("PUBLIC_BASE_URL", "http://localhost:3100")
# No server process of the suite (the second server included) sweeps for due callbacks unless a test
# turns it on: tests drive retries through deliver_callbacks or the setting.
os.environ["CALLBACK_SWEEP_MILLISECONDS"] = "0"
for provider_variable in (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "RESEND_API_KEY",
    "RESEND_WEBHOOK_SECRET",
    "RESEND_API_BASE_URL",
    "ELEVENLABS_API_KEY",
    "ELEVENLABS_API_BASE_URL",
    "LINE_CHANNEL_ACCESS_TOKEN",
    "LINE_CHANNEL_SECRET",
    "LINE_API_BASE_URL",
):
    os.environ.pop(provider_variable, None)
