using SnnSpec.Hardware;
using SnnSpec.KnowledgeDistillation;
using SnnSpec.Learning;
using SnnSpec.Models;

namespace SnnSpec.Api.Tests;

/// <summary>Saving and loading models from C#: float and quantized, trained, and damaged files.</summary>
public class ModelFileTests
{
    // The tiny MINT ConvNet and 4-bit integer recipe of the crossbar-inference tests.
    private static readonly ZooOptions Small = CrossbarInferenceTests.Tiny;
    private static readonly QuantizationOptions IntegerFour = CrossbarInferenceTests.IntegerFour;

    private static string TempFile(string name)
    {
        var dir = Path.Combine(
            Path.GetTempPath(),
            "snnspec-model-files-" + Guid.NewGuid().ToString("N")
        );
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    private static float[] Images(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n * 144).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    private static void AssertSameModel(SnnModel expected, SnnModel actual)
    {
        var x = Images(5, 7);
        Assert.Multiple(() =>
        {
            Assert.That(actual.Name, Is.EqualTo(expected.Name));
            Assert.That(actual.Steps, Is.EqualTo(expected.Steps));
            Assert.That(actual.IsQuantized, Is.EqualTo(expected.IsQuantized));
            Assert.That(actual.ParameterNames, Is.EqualTo(expected.ParameterNames));
            foreach (var n in expected.ParameterNames)
            {
                Assert.That(
                    actual.GetParameter(n).ToArray(),
                    Is.EqualTo(expected.GetParameter(n).ToArray()),
                    n
                );
            }
            Assert.That(actual.Forward(x, 5), Is.EqualTo(expected.Forward(x, 5)));
        });
    }

    [Test]
    public void AFloatModelRoundTrips()
    {
        var m = SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 4 });
        var path = TempFile("float.safetensors");
        m.Save(path);
        AssertSameModel(m, SnnModel.Load(path));
    }

    [Test]
    public void AQuantizedCalibratedModelRoundTripsAndRunsOnCrossbars()
    {
        var train = DataAndEvaluationTests.Synthetic(48, seed: 1);
        var m = SnnModel
            .Create(ModelKind.ConvNet, Small)
            .Quantize(IntegerFour)
            .CalibrateScales(train, 48);
        var path = TempFile("q4.safetensors");
        m.Save(path);
        var back = SnnModel.Load(path);
        AssertSameModel(m, back);
        // A loaded quantized model keeps its configuration: it saves again and deploys.
        var again = TempFile("q4-again.safetensors");
        back.WithSteps(2).Save(again);
        Assert.That(SnnModel.Load(again).IsQuantized);
        var test = DataAndEvaluationTests.Synthetic(16, seed: 2);
        Assert.That(
            CrossbarSimulator.EvaluateOnCrossbars(back, test).CrossbarAccuracy,
            Is.EqualTo(CrossbarSimulator.EvaluateOnCrossbars(m, test).CrossbarAccuracy)
        );
    }

    [Test]
    public async Task ATrainedQuantizedStudentSavesAndLoadsQuantized()
    {
        var spec = new DistillationSpecBuilder()
            .Teacher(SnnModel.Create(ModelKind.ConvNet, Small))
            .Student(
                SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 3 }).Quantize(IntegerFour)
            )
            .AddTemporalKd()
            .Build();
        var result = await Trainer.TrainAsync(
            spec,
            DataAndEvaluationTests.Synthetic(16),
            new TrainingOptions { BatchSize = 8, Epochs = 1 }
        );
        var path = TempFile("student.safetensors");
        result.Student.Save(path);
        var back = SnnModel.Load(path);
        Assert.That(back.IsQuantized);
        AssertSameModel(result.Student, back);
    }

    [Test]
    public void MissingAndDamagedFilesAreNamed()
    {
        var missing = TempFile("missing.safetensors");
        var e = Assert.Throws<FileNotFoundException>(() => SnnModel.Load(missing));
        Assert.That(e!.Message, Does.Contain(missing).And.Contain("SnnModel.Save"));

        var path = TempFile("damaged.safetensors");
        SnnModel.Create(ModelKind.ConvNet, Small).Save(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.Take(bytes.Length / 2).ToArray());
        var damaged = Assert.Throws<SnnSpec.IO.CheckpointFormatException>(() =>
            SnnModel.Load(path)
        );
        Assert.That(damaged!.Message, Does.Contain(path));
    }

    [Test]
    public void SavingOverAFileReplacesIt()
    {
        var path = TempFile("model.safetensors");
        SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 1 }).Save(path);
        var second = SnnModel.Create(ModelKind.ConvNet, Small with { Seed = 2 });
        second.Save(path);
        AssertSameModel(second, SnnModel.Load(path));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Has.Length.EqualTo(1));
    }
}
