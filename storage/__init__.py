"""SQLAlchemy 2 async models, repositories, migrations and the lock stores."""
