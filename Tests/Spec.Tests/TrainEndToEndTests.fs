module SnnSpec.Tests.TrainEndToEndTests

open NUnit.Framework
open SnnSpec
open SnnSpec.Training
open SnnSpec.Tests.TrainTests
