"""The password hasher of the tests' own users: Django's PBKDF2, at 1,000 iterations.

Django 5.2 hashes a password with 1,000,000 iterations of PBKDF2: 0.4 to 0.7 s
of CPU on this project's two-core machines, paid for every user a test
creates with a password and every sign-in a test makes, well over a hundred
in a run of the suite, and again in CI's second pass. The tests' passwords
protect nothing, so they are hashed the same way with a thousandth of the
work. The algorithm's name and the hash's format stay PBKDF2's, with the
iterations in the hash, so a server a test starts (gunicorn, with the
production hashers) checks these passwords as well.
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class TestPasswordHasher(PBKDF2PasswordHasher):
    iterations = 1_000
