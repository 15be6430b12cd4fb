namespace SnnSpec.HwSim
