"""Hardware-in-loop simulator: physically modelled pumps and fans served as Modbus drives."""

from hil.plantfile import DriveSpec, PlantSpec, load_plant
from hil.server import SimulatedPlant
from hil.truth import GroundTruthCollector

__all__ = ["DriveSpec", "GroundTruthCollector", "PlantSpec", "SimulatedPlant", "load_plant"]
