module SnnSpec.Tests.GemmTests
