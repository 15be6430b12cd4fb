using System.Diagnostics;

namespace SnnSpec.Api.Tests;

/// <summary>
/// Packs SnnSpec.Spec, SnnSpec.HwSim and SnnSpec (facade) to a temporary folder and builds and runs a
/// fresh C# console project against them, restoring the SnnSpec packages from that folder only
/// (third-party packages come from the machine's package folder as a fallback, no registry).
/// </summary>
[Category("Slow")]
public class PackageTests
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

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

    private static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator)
            .Any(d =>
                File.Exists(Path.Combine(d, exe)) || File.Exists(Path.Combine(d, exe + ".exe"))
            );

    private static (int Code, string Output) Run(string workDir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment.Remove("NUGET_PACKAGES");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            p.Kill(true);
            return (-1, "timed out: dotnet " + string.Join(" ", args));
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [Test]
    public void PackedFacadeBuildsAFreshConsoleProjectFromTheLocalFolderOnly()
    {
        if (!OnPath("dotnet"))
        {
            Assert.Ignore("dotnet is not on PATH; the pack-and-consume test needs the .NET SDK.");
        }
        var root = RepoRoot();
        var machinePackages =
            Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(
                Environment.GetFolderPath(Environment.SpecialFolder.UserProfile),
                ".nuget",
                "packages"
            );
        var version = $"0.0.0-packtest.{DateTime.UtcNow:yyyyMMddHHmmss}";
        var tmp = Directory.CreateTempSubdirectory("snnspec-pack");
        try
        {
            var feed = Directory.CreateDirectory(Path.Combine(tmp.FullName, "feed")).FullName;
            var cache = Path.Combine(tmp.FullName, "packages");
            foreach (
                var project in new[]
                {
                    "Spec.FSharp/Spec.FSharp.fsproj",
                    "HwSim/HwSim.fsproj",
                    "Api.CSharp/Api.CSharp.csproj",
                }
            )
            {
                var (code, output) = Run(
                    root,
                    "pack",
                    Path.Combine(root, project),
                    "-c",
                    Configuration,
                    "--no-build",
                    "-o",
                    feed,
                    "-p:Version=" + version
                );
                Assert.That(code, Is.EqualTo(0), $"dotnet pack {project} failed:\n{output}");
            }
            Assert.That(
                Directory.GetFiles(feed, "*.nupkg").Select(Path.GetFileName),
                Is.EquivalentTo(
                    new[]
                    {
                        $"SnnSpec.Spec.{version}.nupkg",
                        $"SnnSpec.HwSim.{version}.nupkg",
                        $"SnnSpec.{version}.nupkg",
                    }
                )
            );

            var app = Directory.CreateDirectory(Path.Combine(tmp.FullName, "app")).FullName;
            File.WriteAllText(
                Path.Combine(app, "nuget.config"),
                $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <config>
                    <add key="globalPackagesFolder" value="{cache}" />
                  </config>
                  <packageSources>
                    <clear />
                    <add key="local" value="{feed}" />
                  </packageSources>
                  <fallbackPackageFolders>
                    <clear />
                    <add key="machine" value="{machinePackages}" />
                  </fallbackPackageFolders>
                </configuration>
                """
            );
            File.WriteAllText(
                Path.Combine(app, "App.csproj"),
                $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                    <NuGetAudit>false</NuGetAudit>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="SnnSpec" Version="{version}" />
                  </ItemGroup>
                </Project>
                """
            );
            File.WriteAllText(
                Path.Combine(app, "Program.cs"),
                """
                using SnnSpec.Hardware;
                using SnnSpec.Models;
                using SnnSpec.Tensors;

                var model = SnnModel.Create(ModelKind.ConvNet, new ZooOptions { Width = 0.25f, Steps = 2 });
                var logits = model.Forward(TensorOps.Rand(1, 2, 1, 28, 28)).Logits;
                var cost = new CrossbarSimulator().Estimate(model);
                Console.WriteLine($"logits {string.Join("x", logits.Shape)} energy {cost.EnergyPicojoules > 0}");
                """
            );
            var (buildCode, buildOutput) = Run(app, "build", "-c", "Release");
            Assert.That(
                buildCode,
                Is.EqualTo(0),
                "the consumer project did not build:\n" + buildOutput
            );
            Assert.That(
                Directory.Exists(Path.Combine(cache, "snnspec", version)),
                "SnnSpec was restored from the local feed into the test's own package folder"
            );
            var (runCode, runOutput) = Run(app, "run", "-c", "Release", "--no-build");
            Assert.That(runCode, Is.EqualTo(0), runOutput);
            Assert.That(runOutput, Does.Contain("logits 2x2x10 energy True"));
        }
        finally
        {
            tmp.Delete(true);
        }
    }
}
