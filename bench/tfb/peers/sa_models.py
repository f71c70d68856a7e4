"""SQLAlchemy 2 models and engine set-up shared by the ORM peers (aiohttp-plain, FastAPI)."""

from pathlib import Path

from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tfb import rules

TEMPLATES_DIR = Path(__file__).parent / "templates"


class Base(DeclarativeBase):
    pass


class World(Base):
    __tablename__ = "world"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    randomnumber: Mapped[int] = mapped_column(Integer)


class Fortune(Base):
    __tablename__ = "fortune"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message: Mapped[str] = mapped_column(String(2048))


def create_engine() -> AsyncEngine:
    """An asyncpg engine whose pool never grows past rules.POOL_SIZE."""
    url = rules.DATABASE_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    return create_async_engine(url, pool_size=rules.POOL_SIZE, max_overflow=0)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
