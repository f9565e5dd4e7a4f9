from sqlalchemy import Column, Integer, String, create_engine, select
from sqlalchemy.orm import Session, declarative_base

engine = create_engine("sqlite:///quick_persist.db")
Base = declarative_base()


class Marker(Base):
    __tablename__ = "markers"
    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)


with Session(engine) as session:
    rows = session.execute(select(Marker)).scalars().all()
    print([r.name for r in rows])
