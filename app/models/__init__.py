"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""
from app.models.accounts import Account, Token

__all__ = ["Account", "Token"]
