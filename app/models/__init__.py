"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""
from app.models.accounts import Account, Token
from app.models.faces import Attribute, ChangeLog, Face, FaceDescriptor, FaceList, ListFace
from app.models.verifiers import Verifier

__all__ = ["Account", "Token", "Attribute", "ChangeLog", "Face", "FaceDescriptor", "FaceList", "ListFace", "Verifier"]
