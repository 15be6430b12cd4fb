using System.Diagnostics;

namespace SnnSpec.Api.Tests;

/// <summary>
/// Runs README's F# quick start, <c>dotnet fsi Examples/Prototype.fsx</c>, against the Release build
/// and checks that every law passes and the training run completes.
/// </summary>
[Category("Slow")]
public class PrototypeScriptTests
{
    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SnnSpec.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName
            ?? throw new InvalidOperationException(
                "SnnSpec.sln not found above the test directory"
            );
    }

    [Test]
    public void ThePrototypeScriptPassesEveryLawAndTrains()
    {
        var root = RepoRoot();
        foreach (
            var dll in new[]
            {
                "Spec.FSharp/bin/Release/net10.0/SnnSpec.Spec.dll",
                "Laws/bin/Release/net10.0/SnnSpec.Laws.dll",
            }
        )
        {
            if (!File.Exists(Path.Combine(root, dll)))
            {
                Assert.Ignore($"{dll} is not built; run 'dotnet build -c Release' first.");
            }
        }
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add("fsi");
        psi.ArgumentList.Add("Examples/Prototype.fsx");
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(180)))
        {
            p.Kill(true);
            Assert.Fail("dotnet fsi Examples/Prototype.fsx did not finish within 180 s.");
        }
        var output = stdout.Result + stderr.Result;
        Assert.That(p.ExitCode, Is.EqualTo(0), output);
        Assert.Multiple(() =>
        {
            Assert.That(output, Does.Contain("PASS all:"), output);
            Assert.That(output, Does.Not.Contain("FAIL"), output);
            Assert.That(output, Does.Contain("tw-kl").And.Contain("done: 1 epoch(s)"), output);
        });
    }
}
