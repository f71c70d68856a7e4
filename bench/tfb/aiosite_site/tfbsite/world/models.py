"""TechEmpower's two tables."""

from sqlalchemy.orm import Mapped, mapped_column

from aiosite import Model


class World(Model):
    __tablename__ = "world"

    id: Mapped[int] = mapped_column(primary_key=True)
    randomnumber: Mapped[int]

    def as_json(self) -> dict[str, int]:
        return {"id": self.id, "randomNumber": self.randomnumber}


class Fortune(Model):
    __tablename__ = "fortune"

    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str]
