using System.Reflection;
using SnnSpec.Facade;

namespace SnnSpec.Api.Tests;

/// <summary>The facade's public surface must not expose FSharp.Core types (or F# records/unions).</summary>
public class SurfaceTests
{
    // F# core types deliberately part of the surface: C#-friendly classes with no F# members.
    private static readonly HashSet<Type> AllowedCoreTypes = new()
    {
        typeof(SnnSpec.Tensor),
        typeof(SnnSpec.SnnSpecException),
    };

    private static readonly Assembly Facade = typeof(SnnSpec.Facade.Version).Assembly;

    private static bool IsFSharpCore(Type t) =>
        (t.Namespace?.StartsWith("Microsoft.FSharp", StringComparison.Ordinal) ?? false)
        || t.Assembly.GetName().Name == "FSharp.Core";

    private static bool IsFSharpCompiled(Type t) =>
        t.GetCustomAttributes(false)
            .Any(a => a.GetType().FullName == "Microsoft.FSharp.Core.CompilationMappingAttribute");

    private sealed class Walker
    {
        public readonly List<string> Problems = new();
        private readonly HashSet<Type> seen = new();

        public void Type(Type t, string where)
        {
            if (t.IsByRef || t.IsPointer || t.IsArray)
            {
                Type(t.GetElementType()!, where);
                return;
            }
            if (t.IsGenericParameter)
            {
                foreach (var c in t.GetGenericParameterConstraints())
                {
                    Type(c, where + " (constraint)");
                }
                return;
            }
            if (t.IsGenericType)
            {
                foreach (var a in t.GetGenericArguments())
                {
                    Type(a, where + $" (generic argument of {t.Name})");
                }
                t = t.GetGenericTypeDefinition();
            }
            if (IsFSharpCore(t))
            {
                Problems.Add($"{where}: FSharp.Core type {t.FullName}");
                return;
            }
            bool ours = t.Assembly == Facade;
            bool core = t.Assembly.GetName().Name is "SnnSpec.Spec" or "SnnSpec.HwSim";
            if (core && !AllowedCoreTypes.Contains(t))
            {
                Problems.Add(
                    $"{where}: F# core type {t.FullName}{(IsFSharpCompiled(t) ? " (F# record/union/module)" : "")}"
                );
                return;
            }
            if ((ours || core) && seen.Add(t))
            {
                Members(t);
            }
        }

        public void Members(Type t)
        {
            string n = t.FullName ?? t.Name;
            if (t.BaseType is { } b)
            {
                Type(b, $"{n} base type");
            }
            foreach (var i in t.GetInterfaces())
            {
                Type(i, $"{n} interface");
            }
            const BindingFlags flags =
                BindingFlags.Public
                | BindingFlags.Instance
                | BindingFlags.Static
                | BindingFlags.DeclaredOnly;
            foreach (var f in t.GetFields(flags))
            {
                Type(f.FieldType, $"{n}.{f.Name} field");
            }
            foreach (var p in t.GetProperties(flags))
            {
                Type(p.PropertyType, $"{n}.{p.Name} property");
                foreach (var ip in p.GetIndexParameters())
                {
                    Type(ip.ParameterType, $"{n}.{p.Name}[{ip.Name}]");
                }
            }
            foreach (var e in t.GetEvents(flags))
            {
                Type(e.EventHandlerType!, $"{n}.{e.Name} event");
            }
            foreach (var c in t.GetConstructors(flags))
            {
                foreach (var p in c.GetParameters())
                {
                    Type(p.ParameterType, $"{n}..ctor({p.Name})");
                }
            }
            foreach (var m in t.GetMethods(flags))
            {
                Type(m.ReturnType, $"{n}.{m.Name} return");
                foreach (var p in m.GetParameters())
                {
                    Type(p.ParameterType, $"{n}.{m.Name}({p.Name})");
                }
                foreach (var g in m.GetGenericArguments())
                {
                    Type(g, $"{n}.{m.Name}<{g.Name}>");
                }
            }
            foreach (var nested in t.GetNestedTypes(BindingFlags.Public))
            {
                Type(nested, $"{n} nested");
            }
        }
    }

    [Test]
    public void PublicSurfaceHasNoFSharpCoreTypes()
    {
        var w = new Walker();
        var exported = Facade.GetExportedTypes();
        Assert.That(exported, Has.Length.GreaterThan(20), "the facade exports its types");
        foreach (var t in exported)
        {
            w.Type(t, t.FullName!);
        }
        Assert.That(w.Problems, Is.Empty, string.Join("\n", w.Problems.Distinct()));
    }

    [Test]
    public void WalkerDetectsFSharpTypesInSignatures()
    {
        // The check itself must catch what it is meant to catch: options, lists, functions, F# records,
        // and F# types nested in arrays, generics, tasks and delegates.
        var w = new Walker();
        w.Members(typeof(Leaky));
        var text = string.Join("\n", w.Problems);
        Assert.Multiple(() =>
        {
            Assert.That(text, Does.Contain("FSharpOption"));
            Assert.That(text, Does.Contain("FSharpList"));
            Assert.That(text, Does.Contain("FSharpFunc"));
            Assert.That(text, Does.Contain("FSharpMap"));
            Assert.That(text, Does.Contain("SnnSpec.ZooConfig"));
            Assert.That(text, Does.Contain("SnnSpec.Model "));
            Assert.That(w.Problems.Count(p => p.Contains("FSharpSet")), Is.EqualTo(1));
        });
    }

    public class Leaky
    {
        public Microsoft.FSharp.Core.FSharpOption<int>? Option;
        public Microsoft.FSharp.Collections.FSharpList<string>[]? Lists { get; set; }

        public Task<Func<Microsoft.FSharp.Core.FSharpFunc<int, int>>>? Task() => null;

        public void Progress(IProgress<Microsoft.FSharp.Collections.FSharpMap<string, int>> p) { }

        public Tuple<Microsoft.FSharp.Collections.FSharpSet<int>, int>? Tuple;
        public ZooConfig? Config;
        public SnnSpec.Model? Model;
    }

    [Test]
    public void EveryPublicMemberIsDocumented()
    {
        var xml = Path.ChangeExtension(Facade.Location, ".xml");
        Assert.That(File.Exists(xml), $"the facade's XML documentation file {xml} is built");
        var doc = System.Xml.Linq.XDocument.Load(xml);
        var names = doc.Descendants("member").Select(m => (string)m.Attribute("name")!).ToHashSet();
        var missing = Facade
            .GetExportedTypes()
            .Where(t => !names.Contains("T:" + t.FullName))
            .Select(t => t.FullName)
            .ToList();
        Assert.That(missing, Is.Empty, "undocumented types: " + string.Join(", ", missing));
    }
}
