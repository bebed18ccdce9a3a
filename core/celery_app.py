"""Celery wiring, following Flask's own Celery pattern.

Every task runs inside the Flask application context (``FlaskTask``); tasks are declared with
``@shared_task`` in each package's ``tasks.py``; the beat schedule lives here, in one place.
"""

from __future__ import annotations

from celery import Celery, Task
from celery.schedules import crontab

#: The one beat schedule of the scheme. Feature packages add their entries here.
BEAT_SCHEDULE: dict = {
    "purge-expired-credentials": {
        "task": "core.tasks.purge_expired_credentials",
        "schedule": crontab(minute=15, hour=3),
    },
    "purge-invitations": {
        "task": "core.tasks.purge_invitations",
        "schedule": crontab(minute=20, hour=3),
    },
    "send-outbox": {
        "task": "core.mail.send_outbox",
        "schedule": 60.0,
    },
    "close-missed-checkouts": {
        "task": "volunteering.tasks.close_missed_checkouts",
        "schedule": crontab(minute="*/15"),
    },
    "missed-checkout-digests": {
        "task": "volunteering.tasks.send_missed_checkout_digests",
        "schedule": crontab(minute=0, hour=7),
    },
    "expire-credits": {
        "task": "rewards.tasks.expire_credits",
        "schedule": crontab(minute=30, hour=2),
    },
    "send-expiry-reminders": {
        "task": "rewards.tasks.send_expiry_reminders",
        "schedule": crontab(minute=0, hour=9),
    },
    "settle-partners": {
        "task": "partners.tasks.settle_partners",
        "schedule": crontab(minute=0, hour=4, day_of_week="mon"),
    },
    "pay-settlements": {
        "task": "partners.tasks.pay_settlements",
        "schedule": crontab(minute="*/10"),
    },
    "purge-redemption-codes": {
        "task": "partners.tasks.purge_redemption_codes",
        "schedule": crontab(minute=45, hour=3),
    },
}

#: Modules holding ``@shared_task`` functions, imported by the worker.
TASK_MODULES = [
    "core.tasks",
    "core.mail",
    "volunteering.tasks",
    "rewards.tasks",
    "partners.tasks",
]


def celery_init_app(app) -> Celery:
    """Create the Celery app bound to ``app`` and store it in ``app.extensions``."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    for module in TASK_MODULES:
        __import__(module)
    app.extensions["celery"] = celery_app
    return celery_app
