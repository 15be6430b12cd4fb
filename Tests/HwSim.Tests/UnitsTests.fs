module SnnSpec.HwSim.Tests.UnitsTests
