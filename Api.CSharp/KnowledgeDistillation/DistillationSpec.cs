using Microsoft.FSharp.Collections;
using SnnSpec.Distillation;
using SnnSpec.Facade;
using SnnSpec.Models;
using SnnSpec.Training;

namespace SnnSpec.KnowledgeDistillation;

/// <summary>What a loss term sees of a teacher or student run.</summary>
public sealed class KdOutputsView
{
    internal KdOutputsView(KdOutputs outputs)
    {
        Inner = outputs;
        Membranes = Interop.ToDictionary(outputs.Membranes);
        Spikes = Interop.ToDictionary(outputs.Spikes);
        Taps = Interop.ToDictionary(outputs.Taps);
    }

    internal KdOutputs Inner { get; }

    /// <summary>Per-step logits [T, B, K] (an ANN: [1, B, K]).</summary>
    public Tensor Logits => Inner.Logits;

    /// <summary>Recorded membrane potentials [T, B, …] by population name.</summary>
    public IReadOnlyDictionary<string, Tensor> Membranes { get; }

    /// <summary>Recorded spikes [T, B, …] by population name.</summary>
    public IReadOnlyDictionary<string, Tensor> Spikes { get; }

    /// <summary>Recorded taps [T, B, …] by name.</summary>
    public IReadOnlyDictionary<string, Tensor> Taps { get; }

    /// <summary>A membrane by probe name; the error lists the recorded ones.</summary>
    /// <param name="name">A population name.</param>
    public Tensor Membrane(string name) =>
        Membranes.TryGetValue(Check.Name(name, nameof(name)), out var t)
            ? t
            : throw new ArgumentException(
                $"no membrane '{name}' was recorded; recorded: {(Membranes.Count == 0 ? "(none)" : string.Join(", ", Membranes.Keys))}. Add a probe with DistillationSpecBuilder.ProbeMembranes.",
                nameof(name)
            );
}

/// <summary>A term of the objective: its name and weight.</summary>
/// <param name="Name">The term's name ("ce", "temporal", "membrane", …).</param>
/// <param name="Weight">Its weight ≥ 0.</param>
/// <param name="UsesTeacher">Whether the term reads the teacher's outputs.</param>
public sealed record LossTermInfo(string Name, float Weight, bool UsesTeacher);

/// <summary>An evaluated objective: the total and each term's weighted value.</summary>
/// <param name="Total">Σ weight · loss.</param>
/// <param name="Terms">(term name, weighted value), in the spec's order.</param>
public sealed record LossBreakdown(float Total, IReadOnlyList<KeyValuePair<string, float>> Terms);

/// <summary>
/// A distillation objective: student, optional teacher, the weighted loss terms and the probes each
/// side must record. Built with <see cref="DistillationSpecBuilder"/>.
/// </summary>
public sealed class DistillationSpec
{
    internal DistillationSpec(
        SnnModel? teacher,
        SnnModel student,
        FSharpList<LossTerm> terms,
        FSharpList<TapUse> uses,
        IReadOnlyList<LossTermInfo> infos,
        ForwardOptions teacherProbes,
        ForwardOptions studentProbes
    )
    {
        Teacher = teacher;
        Student = student;
        FsTerms = terms;
        FsUses = uses;
        Terms = infos;
        TeacherProbes = teacherProbes;
        StudentProbes = studentProbes;
    }

    internal FSharpList<LossTerm> FsTerms { get; }

    /// <summary>What the terms read, as the core's tap uses (all attached to the first term).</summary>
    internal FSharpList<TapUse> FsUses { get; }

    /// <summary>The core's spec for <paramref name="student"/> (this spec's student or a copy of it).</summary>
    internal SnnSpec.Training.DistillationSpec ToFSharp(Model student)
    {
        var terms = FsTerms
            .Select((t, i) => SpecTermModule.ofTerm(i == 0 ? FsUses : FSharpList<TapUse>.Empty, t))
            .ToArray();
        var students = Interop.ToFSharpList(new[] { student });
        return Teacher is null
            ? DistillationSpecModule.alone(students, Interop.ToFSharpList(terms))
            : DistillationSpecModule.create(Teacher.Inner, students, Interop.ToFSharpList(terms));
    }

    /// <summary>The teacher, or null when every term reads the student only.</summary>
    public SnnModel? Teacher { get; }

    /// <summary>The student to train.</summary>
    public SnnModel Student { get; }

    /// <summary>The terms in order.</summary>
    public IReadOnlyList<LossTermInfo> Terms { get; }

    /// <summary>True when some term reads the teacher.</summary>
    public bool UsesTeacher => Terms.Any(t => t.UsesTeacher);

    /// <summary>What the teacher's forward run must record (eval mode).</summary>
    public ForwardOptions TeacherProbes { get; }

    /// <summary>What the student's forward run must record.</summary>
    public ForwardOptions StudentProbes { get; }

    /// <summary>The objective on given outputs (teacher detached), e.g. to inspect a batch.</summary>
    /// <param name="teacher">The teacher's outputs (ignored by student-only terms; may be null if no term uses the teacher).</param>
    /// <param name="student">The student's outputs.</param>
    /// <param name="labels">One label per sample.</param>
    public LossBreakdown Evaluate(ForwardResult? teacher, ForwardResult student, int[] labels)
    {
        Check.NotNull(student, nameof(student));
        Check.NotNull(labels, nameof(labels));
        if (teacher is null && UsesTeacher)
        {
            throw new ArgumentNullException(
                nameof(teacher),
                $"teacher outputs are required: the terms {string.Join(", ", Terms.Where(t => t.UsesTeacher).Select(t => t.Name))} read them."
            );
        }
        var s = KdOutputsModule.ofForward(student.Output);
        var t = teacher is null ? s : KdOutputsModule.ofForward(teacher.Output);
        var result = Diff.noGrad(
            Microsoft.FSharp.Core.FuncConvert.FromFunc(() =>
                LossTermModule.totalWithParts(FsTerms, t, s, labels)
            )
        );
        return new LossBreakdown(
            result.Item1.ToScalar(),
            result
                .Item2.Select(p => new KeyValuePair<string, float>(p.Item1, p.Item2.ToScalar()))
                .ToArray()
        );
    }
}
