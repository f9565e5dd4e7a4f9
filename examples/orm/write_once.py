from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import Session, declarative_base

engine = create_engine("sqlite:///quick_persist.db")
Base = declarative_base()


class Marker(Base):
    __tablename__ = "markers"
    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)


Base.metadata.create_all(engine)

with Session(engine) as session:
    session.add(Marker(name="persistent-check"))
    session.commit()

print("Wrote marker")
