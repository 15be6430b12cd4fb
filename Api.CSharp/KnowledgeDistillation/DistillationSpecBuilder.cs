using Microsoft.FSharp.Core;
using SnnSpec.Distillation;
using SnnSpec.Facade;
using SnnSpec.Models;
using SnnSpec.Training;

namespace SnnSpec.KnowledgeDistillation;

/// <summary>How student step s is matched to the teacher's steps in membrane distillation.</summary>
public enum MembraneAlignment
{
    /// <summary>Student steps against the teacher's first steps (needs student T ≤ teacher T).</summary>
    Prefix,

    /// <summary>The teacher's steps averaged into as many bins as the student has steps.</summary>
    PooledBins,

    /// <summary>Both sides reduced to their time-mean (any T on either side).</summary>
    TimeMean,
}

/// <summary>How a cross-entropy reads per-step outputs [T, B, K] as class scores.</summary>
public enum OutputReadout
{
    /// <summary>The time-mean of the outputs (mean logits, or firing rates of a spiking output).</summary>
    Mean,

    /// <summary>The time-sum of the outputs: spike counts of a spiking output population.</summary>
    SpikeCount,
}

/// <summary>The self-distillation target of temporal-wise KD's TWSD term.</summary>
public enum SelfDistillationKind
{
    /// <summary>Per sample, the mean logits over only the steps that predict the label (reference code).</summary>
    CorrectnessMasked,

    /// <summary>The detached time-mean of the student's logits (the paper).</summary>
    EnsembleMean,
}

/// <summary>Weights of the combined spike-tensor loss (Distilling Spikes); all 1 by default.</summary>
public sealed record SpikeKdOptions
{
    /// <summary>Weight of the KL on spike counts.</summary>
    public float Kl { get; init; } = 1f;

    /// <summary>Weight of the full L1.</summary>
    public float L1 { get; init; } = 1f;

    /// <summary>Weight of the full squared L2.</summary>
    public float L2 { get; init; } = 1f;

    /// <summary>Weight of the sliding-window L1.</summary>
    public float SlidingL1 { get; init; } = 1f;

    /// <summary>Weight of the sliding-window L2.</summary>
    public float SlidingL2 { get; init; } = 1f;

    /// <summary>Weight of the student's CE on its spike counts (0 turns it off).</summary>
    public float Ce { get; init; } = 1f;

    /// <summary>Temperature of the KL on counts.</summary>
    public float Tau { get; init; } = 1f;

    /// <summary>Window length Δ ≥ 1 of the sliding losses (must be ≤ T).</summary>
    public int Window { get; init; } = 2;

    /// <summary>Compare window spike counts instead of raw windows.</summary>
    public bool CompareWindowCounts { get; init; }

    internal SpikeKdConfig ToFSharp()
    {
        Check.NonNegativeFinite(Kl, nameof(Kl), "SpikeKdOptions.Kl");
        Check.NonNegativeFinite(L1, nameof(L1), "SpikeKdOptions.L1");
        Check.NonNegativeFinite(L2, nameof(L2), "SpikeKdOptions.L2");
        Check.NonNegativeFinite(SlidingL1, nameof(SlidingL1), "SpikeKdOptions.SlidingL1");
        Check.NonNegativeFinite(SlidingL2, nameof(SlidingL2), "SpikeKdOptions.SlidingL2");
        Check.NonNegativeFinite(Ce, nameof(Ce), "SpikeKdOptions.Ce");
        Check.PositiveFinite(Tau, nameof(Tau), "SpikeKdOptions.Tau");
        Check.Positive(Window, nameof(Window), "SpikeKdOptions.Window");
        return new SpikeKdConfig(
            Kl,
            L1,
            L2,
            SlidingL1,
            SlidingL2,
            Ce,
            Tau,
            Window,
            CompareWindowCounts ? WindowReading.WindowCounts : WindowReading.RawWindows
        );
    }
}

/// <summary>
/// Builds a <see cref="DistillationSpec"/> fluently:
/// <code>
/// var spec = new DistillationSpecBuilder()
///     .Teacher(teacher).Student(student)
///     .AddTemporalKd(alpha: 0.2f, beta: 0.5f, tau: 3f)
///     .AddMembraneKd(weight: 1f)
///     .Build();
/// </code>
/// Every term of SnnSpec's distillation methods is available; <see cref="AddCustom"/> plugs in any
/// differentiable function of the two sides' outputs.
/// </summary>
public sealed class DistillationSpecBuilder
{
    private sealed record Pending(
        string Name,
        float Weight,
        bool UsesTeacher,
        Func<SnnModel?, SnnModel, LossTerm> Make
    );

    private readonly List<Pending> pending = new();
    private readonly List<Action<SnnModel?, SnnModel, ProbeSet>> probeActions = new();
    private SnnModel? teacher;
    private SnnModel? student;

    private sealed class ProbeSet
    {
        public readonly SortedSet<string> TeacherMembranes = new(StringComparer.Ordinal);
        public readonly SortedSet<string> StudentMembranes = new(StringComparer.Ordinal);
        public readonly SortedSet<string> TeacherSpikes = new(StringComparer.Ordinal);
        public readonly SortedSet<string> StudentSpikes = new(StringComparer.Ordinal);
        public readonly SortedSet<string> TeacherTaps = new(StringComparer.Ordinal);
        public readonly SortedSet<string> StudentTaps = new(StringComparer.Ordinal);

        /// <summary>The same reads as the core's tap uses (probes and validation of the F# trainer).</summary>
        public readonly List<TapUse> Uses = new();
    }

    /// <summary>Sets the teacher (frozen; run in eval mode).</summary>
    /// <param name="model">The teacher model.</param>
    public DistillationSpecBuilder Teacher(SnnModel model)
    {
        teacher = Check.NotNull(model, nameof(model));
        return this;
    }

    /// <summary>Sets the student (the model that is trained).</summary>
    /// <param name="model">The student model.</param>
    public DistillationSpecBuilder Student(SnnModel model)
    {
        student = Check.NotNull(model, nameof(model));
        return this;
    }

    private DistillationSpecBuilder Add(
        string name,
        float weight,
        bool usesTeacher,
        Func<SnnModel?, SnnModel, LossTerm> make
    )
    {
        Check.NonNegativeFinite(weight, nameof(weight), $"the weight of term '{name}'");
        pending.Add(new Pending(name, weight, usesTeacher, make));
        return this;
    }

    /// <summary>The student's cross-entropy on its time-mean logits, or on the spike counts of a
    /// spiking output population (<see cref="OutputReadout.SpikeCount"/>).</summary>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="labelSmoothing">Label smoothing ε in [0, 1).</param>
    /// <param name="readout">How the per-step outputs become class scores.</param>
    public DistillationSpecBuilder AddCrossEntropy(
        float weight = 1f,
        float labelSmoothing = 0f,
        OutputReadout readout = OutputReadout.Mean
    )
    {
        Check.Fraction(labelSmoothing, false, nameof(labelSmoothing));
        var r = readout switch
        {
            OutputReadout.Mean => SnnSpec.Distillation.TimeReadout.Mean,
            OutputReadout.SpikeCount => SnnSpec.Distillation.TimeReadout.Count,
            _ => throw new ArgumentOutOfRangeException(
                nameof(readout),
                readout,
                "Fix: use OutputReadout.Mean or OutputReadout.SpikeCount."
            ),
        };
        return Add(
            "ce",
            weight,
            false,
            (_, _) => LossTermModule.crossEntropyWith(r, labelSmoothing, weight)
        );
    }

    /// <summary>Per-step cross-entropy (TET / TWCE): the mean over steps of CE(z_t, y).</summary>
    /// <param name="weight">Weight ≥ 0.</param>
    public DistillationSpecBuilder AddPerStepCrossEntropy(float weight = 1f) =>
        Add("twce", weight, false, (_, _) => LossTermModule.perStepCrossEntropy(weight));

    /// <summary>Hinton's logit KD τ²·KL on the time-mean logits of both sides.</summary>
    /// <param name="tau">Temperature τ &gt; 0.</param>
    /// <param name="weight">Weight ≥ 0.</param>
    public DistillationSpecBuilder AddLogitKd(float tau = 4f, float weight = 1f)
    {
        Check.PositiveFinite(tau, nameof(tau), "tau (the temperature)");
        return Add("kd", weight, true, (_, _) => LossTermModule.logitKd(tau, weight));
    }

    /// <summary>Weighted soft-label distillation (WSLD) on the time-mean logits.</summary>
    /// <param name="tau">Temperature τ &gt; 0.</param>
    /// <param name="weight">Weight ≥ 0.</param>
    public DistillationSpecBuilder AddWsld(float tau = 2f, float weight = 1f)
    {
        Check.PositiveFinite(tau, nameof(tau), "tau (the temperature)");
        return Add("wsld", weight, true, (_, _) => LossTermModule.wsld(tau, weight));
    }

    /// <summary>
    /// Temporal-wise KD for full-range timestep deployment: TWCE + α·TWKL + β·TWSD (the term carries
    /// its own CE, weight 1).
    /// </summary>
    /// <param name="alpha">Weight α ≥ 0 of the per-step KL to the teacher.</param>
    /// <param name="beta">Weight β ≥ 0 of the per-step self-distillation.</param>
    /// <param name="tau">Temperature τ &gt; 0 of both KL terms.</param>
    /// <param name="target">The self-distillation target.</param>
    public DistillationSpecBuilder AddTemporalKd(
        float alpha = 0.2f,
        float beta = 0.5f,
        float tau = 3f,
        SelfDistillationKind target = SelfDistillationKind.CorrectnessMasked
    )
    {
        Check.NonNegativeFinite(alpha, nameof(alpha), "alpha (the TWKL weight)");
        Check.NonNegativeFinite(beta, nameof(beta), "beta (the TWSD weight)");
        Check.PositiveFinite(tau, nameof(tau), "tau (the temperature)");
        var cfg = new TemporalConfig(alpha, beta, tau, ToFSharp(target));
        return Add("temporal", 1f, true, (_, _) => LossTermModule.temporal(cfg));
    }

    /// <summary>TWKL alone: the mean over steps of τ²·KL(teacher ‖ student step t).</summary>
    /// <param name="tau">Temperature τ &gt; 0.</param>
    /// <param name="weight">Weight ≥ 0.</param>
    public DistillationSpecBuilder AddTwkl(float tau = 3f, float weight = 1f)
    {
        Check.PositiveFinite(tau, nameof(tau), "tau (the temperature)");
        return Add("twkl", weight, true, (_, _) => LossTermModule.twkl(tau, weight));
    }

    /// <summary>TWSD alone: per-step self-distillation towards the student's own target.</summary>
    /// <param name="tau">Temperature τ &gt; 0.</param>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="target">The target.</param>
    public DistillationSpecBuilder AddTwsd(
        float tau = 3f,
        float weight = 0.5f,
        SelfDistillationKind target = SelfDistillationKind.CorrectnessMasked
    )
    {
        Check.PositiveFinite(tau, nameof(tau), "tau (the temperature)");
        var t = ToFSharp(target);
        return Add("twsd", weight, false, (_, _) => LossTermModule.twsd(t, tau, weight));
    }

    private static SelfDistillationTarget ToFSharp(SelfDistillationKind target) =>
        target switch
        {
            SelfDistillationKind.CorrectnessMasked => SelfDistillationTarget.CorrectnessMasked,
            SelfDistillationKind.EnsembleMean => SelfDistillationTarget.EnsembleMean,
            _ => throw new ArgumentOutOfRangeException(
                nameof(target),
                target,
                "target must be CorrectnessMasked or EnsembleMean."
            ),
        };

    private static Alignment ToFSharp(MembraneAlignment alignment) =>
        alignment switch
        {
            MembraneAlignment.Prefix => Alignment.Prefix,
            MembraneAlignment.PooledBins => Alignment.PooledBins,
            MembraneAlignment.TimeMean => Alignment.TimeMean,
            _ => throw new ArgumentOutOfRangeException(
                nameof(alignment),
                alignment,
                "alignment must be Prefix, PooledBins or TimeMean."
            ),
        };

    /// <summary>
    /// Membrane-potential KD (MD-SNN) on the student's populations at a granularity; the teacher must
    /// have populations of the same names and shapes (MD-SNN distils a quantized student of the
    /// teacher's own architecture and width).
    /// </summary>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="level">Conv-, block- or stage-wise probes.</param>
    /// <param name="alignment">How student steps meet teacher steps.</param>
    public DistillationSpecBuilder AddMembraneKd(
        float weight = 1f,
        ProbeLevel level = ProbeLevel.ConvWise,
        MembraneAlignment alignment = MembraneAlignment.Prefix
    )
    {
        var a = ToFSharp(alignment);
        _ = SnnModel.ToFSharp(level);
        string[]? names = null;
        probeActions.Add(
            (t, s, p) =>
            {
                names = s.ProbeNames(level).ToArray();
                var known = new HashSet<string>(t!.SpikingLayerNames);
                var missing = names.Where(n => !known.Contains(n)).ToArray();
                if (missing.Length > 0)
                {
                    throw new ArgumentException(
                        $"membrane KD at {level}: the teacher {t.Name} has no population {string.Join(", ", missing.Select(m => "'" + m + "'"))}; use AddMembraneKd with explicit (teacher, student) pairs. Teacher populations: {string.Join(", ", known)}.",
                        nameof(level)
                    );
                }
                p.TeacherMembranes.UnionWith(names);
                p.StudentMembranes.UnionWith(names);
                p.Uses.AddRange(names.Select(n => TapUse.NewMembrane(n, n, a)));
            }
        );
        return Add(
            "membrane",
            weight,
            true,
            (_, _) => LossTermModule.membrane(a, Interop.ToFSharpList(names!), weight)
        );
    }

    /// <summary>Membrane-potential KD over explicit (teacher population, student population) pairs.</summary>
    /// <param name="pairs">Population pairs; names must exist in the respective models.</param>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="alignment">How student steps meet teacher steps.</param>
    public DistillationSpecBuilder AddMembraneKd(
        IEnumerable<(string Teacher, string Student)> pairs,
        float weight = 1f,
        MembraneAlignment alignment = MembraneAlignment.Prefix
    )
    {
        var list = Check.NotNull(pairs, nameof(pairs)).ToArray();
        if (list.Length == 0)
        {
            throw new ArgumentException(
                "pairs must name at least one (teacher, student) population pair.",
                nameof(pairs)
            );
        }
        var a = ToFSharp(alignment);
        probeActions.Add(
            (t, s, p) =>
            {
                RequirePopulations(t!, list.Select(x => x.Teacher), "teacher", nameof(pairs));
                RequirePopulations(s, list.Select(x => x.Student), "student", nameof(pairs));
                p.TeacherMembranes.UnionWith(list.Select(x => x.Teacher));
                p.StudentMembranes.UnionWith(list.Select(x => x.Student));
                p.Uses.AddRange(list.Select(x => TapUse.NewMembrane(x.Teacher, x.Student, a)));
            }
        );
        var fs = Interop.ToFSharpList(list.Select(x => Tuple.Create(x.Teacher, x.Student)));
        return Add("membrane", weight, true, (_, _) => LossTermModule.membranePairs(a, fs, weight));
    }

    private static void RequirePopulations(
        SnnModel m,
        IEnumerable<string> names,
        string side,
        string param
    )
    {
        var known = new HashSet<string>(m.SpikingLayerNames);
        foreach (var n in names)
        {
            if (!known.Contains(n))
            {
                throw new ArgumentException(
                    $"the {side} {m.Name} has no spiking population '{n}'; expected one of: {string.Join(", ", known)}.",
                    param
                );
            }
        }
    }

    /// <summary>The combined spike-tensor loss on one population present on both sides (Distilling Spikes).</summary>
    /// <param name="population">A spiking population of both models (e.g. the last hidden layer).</param>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="options">Component weights; null uses equal weights.</param>
    public DistillationSpecBuilder AddSpikeKd(
        string population,
        float weight = 1f,
        SpikeKdOptions? options = null
    )
    {
        Check.Name(population, nameof(population));
        var cfg = (options ?? new SpikeKdOptions()).ToFSharp();
        probeActions.Add(
            (t, s, p) =>
            {
                RequirePopulations(t!, new[] { population }, "teacher", nameof(population));
                RequirePopulations(s, new[] { population }, "student", nameof(population));
                p.TeacherSpikes.Add(population);
                p.StudentSpikes.Add(population);
                p.Uses.Add(TapUse.NewSpikes(population, population));
            }
        );
        return Add(
            "spikes",
            weight,
            true,
            (_, _) => LossTermModule.spikes(cfg, population, weight)
        );
    }

    /// <summary>
    /// Feature MSE between the two sides' taps (default: the classifier input "feature"). When the
    /// channel counts differ give both so that a 1×1 adapter is initialised from the seed (it is
    /// trained with the student).
    /// </summary>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="studentChannels">Student feature channels (with <paramref name="teacherChannels"/>), or null for equal widths.</param>
    /// <param name="teacherChannels">Teacher feature channels, or null.</param>
    /// <param name="seed">Seed of the adapter.</param>
    /// <param name="teacherTap">The teacher's tap.</param>
    /// <param name="studentTap">The student's tap.</param>
    public DistillationSpecBuilder AddFeatureKd(
        float weight = 1f,
        int? studentChannels = null,
        int? teacherChannels = null,
        int seed = 0,
        string teacherTap = "feature",
        string studentTap = "feature"
    )
    {
        Check.Name(teacherTap, nameof(teacherTap));
        Check.Name(studentTap, nameof(studentTap));
        if ((studentChannels is null) != (teacherChannels is null))
        {
            throw new ArgumentException(
                "give both studentChannels and teacherChannels (for an adapter) or neither.",
                nameof(studentChannels)
            );
        }
        Parameters ps = ParametersModule.ofList(
            Microsoft.FSharp.Collections.FSharpList<Tuple<string, Tensor>>.Empty
        );
        if (studentChannels is { } sc && teacherChannels is { } tc)
        {
            Check.Positive(sc, nameof(studentChannels));
            Check.Positive(tc, nameof(teacherChannels));
            if (sc != tc)
            {
                ps = FeatureKd.initAdapter(seed, sc, tc);
            }
        }
        probeActions.Add(
            (_, _, p) =>
            {
                p.TeacherTaps.Add(teacherTap);
                p.StudentTaps.Add(studentTap);
                p.Uses.Add(
                    TapUse.NewFeature(
                        teacherTap,
                        studentTap,
                        ps.TryFind("adapter.weight") is not null
                    )
                );
            }
        );
        return Add(
            "feature",
            weight,
            true,
            (_, _) => LossTermModule.feature(ps, teacherTap, studentTap, weight)
        );
    }

    /// <summary>
    /// Blurred KD (BKDSNN) between the two sides' feature maps (default: the zoo conv models'
    /// "feature_map" tap, [T, B, C, h, w] before global pooling): a randomly masked, restored student
    /// feature regressed onto the teacher's. The adapter (when the channel counts differ) and the
    /// restoration network are initialised from the seed and trained with the student.
    /// </summary>
    /// <param name="studentChannels">Student feature channels ≥ 1.</param>
    /// <param name="teacherChannels">Teacher feature channels ≥ 1.</param>
    /// <param name="weight">Weight ≥ 0 (the method's α_bkd; default 2e-3).</param>
    /// <param name="lambda">Drop probability λ in [0, 1).</param>
    /// <param name="seed">Seed of the parameters and masks.</param>
    /// <param name="teacherTap">The teacher's feature-map tap.</param>
    /// <param name="studentTap">The student's feature-map tap.</param>
    public DistillationSpecBuilder AddBlurredKd(
        int studentChannels,
        int teacherChannels,
        float weight = 2e-3f,
        float lambda = 0.15f,
        int seed = 0,
        string teacherTap = "feature_map",
        string studentTap = "feature_map"
    )
    {
        Check.Positive(studentChannels, nameof(studentChannels));
        Check.Positive(teacherChannels, nameof(teacherChannels));
        Check.Fraction(lambda, false, nameof(lambda), "lambda (the drop probability)");
        Check.Name(teacherTap, nameof(teacherTap));
        Check.Name(studentTap, nameof(studentTap));
        var cfg = new BlurredConfig(lambda, 1f, false);
        var ps = BlurredKd.init(seed, studentChannels, teacherChannels);
        probeActions.Add(
            (_, _, p) =>
            {
                p.TeacherTaps.Add(teacherTap);
                p.StudentTaps.Add(studentTap);
                p.Uses.Add(
                    TapUse.NewFeature(teacherTap, studentTap, studentChannels != teacherChannels)
                );
            }
        );
        return Add(
            "bkd",
            weight,
            true,
            (_, _) =>
                LossTermModule.blurred(
                    cfg,
                    ps,
                    RngModule.create(seed),
                    teacherTap,
                    studentTap,
                    weight
                )
        );
    }

    /// <summary>
    /// A custom term: any differentiable function of (teacher outputs, student outputs, labels)
    /// returning a one-element tensor. The teacher's outputs arrive detached.
    /// </summary>
    /// <param name="name">The term's name (for logs and progress).</param>
    /// <param name="weight">Weight ≥ 0.</param>
    /// <param name="loss">The loss; build it with <see cref="Tensors.TensorOps"/> and Tensor operators.</param>
    /// <param name="usesTeacher">Whether the function reads the teacher (a teacher is then required).</param>
    public DistillationSpecBuilder AddCustom(
        string name,
        float weight,
        Func<KdOutputsView, KdOutputsView, int[], Tensor> loss,
        bool usesTeacher = true
    )
    {
        Check.Name(name, nameof(name));
        Check.NotNull(loss, nameof(loss));
        var f = FuncConvert.FromFunc<KdOutputs, KdOutputs, int[], Tensor>(
            (t, s, y) =>
                loss(new KdOutputsView(t), new KdOutputsView(s), y)
                ?? throw new InvalidOperationException(
                    $"the custom loss '{name}' returned null; it must return a one-element tensor."
                )
        );
        return Add(name, weight, usesTeacher, (_, _) => LossTermModule.custom(name, weight, f));
    }

    /// <summary>Also records these membranes on both sides (for custom terms).</summary>
    /// <param name="populations">Population names present in both models.</param>
    public DistillationSpecBuilder ProbeMembranes(params string[] populations)
    {
        Check.NotNull(populations, nameof(populations));
        probeActions.Add(
            (t, s, p) =>
            {
                if (t is not null)
                {
                    RequirePopulations(t, populations, "teacher", nameof(populations));
                    p.TeacherMembranes.UnionWith(populations);
                }
                RequirePopulations(s, populations, "student", nameof(populations));
                p.StudentMembranes.UnionWith(populations);
                p.Uses.AddRange(
                    populations.Select(n =>
                        t is null
                            ? TapUse.NewStudentMembrane(n)
                            : TapUse.NewMembrane(n, n, Alignment.TimeMean)
                    )
                );
            }
        );
        return this;
    }

    /// <summary>Validates the choices and produces the spec.</summary>
    /// <exception cref="InvalidOperationException">No student, no term, or a teacher-reading term without a teacher.</exception>
    /// <exception cref="ArgumentException">A probe names a population a model does not have.</exception>
    public DistillationSpec Build()
    {
        var s =
            student
            ?? throw new InvalidOperationException(
                "Build: no student; call Student(model) before Build()."
            );
        if (pending.Count == 0)
        {
            throw new InvalidOperationException(
                "Build: no loss term; add at least one (e.g. AddCrossEntropy() or AddTemporalKd())."
            );
        }
        var needTeacher = pending.Where(p => p.UsesTeacher).Select(p => p.Name).ToArray();
        if (teacher is null && needTeacher.Length > 0)
        {
            throw new InvalidOperationException(
                $"Build: the terms {string.Join(", ", needTeacher.Distinct())} read a teacher; call Teacher(model) or drop them."
            );
        }
        if (teacher is not null && teacher.Classes != s.Classes)
        {
            throw new InvalidOperationException(
                $"Build: the teacher predicts {teacher.Classes} classes but the student {s.Classes}; both heads must predict the same classes."
            );
        }
        if (teacher is not null && !teacher.InputShape.SequenceEqual(s.InputShape))
        {
            throw new InvalidOperationException(
                $"Build: the teacher takes inputs [{string.Join(", ", teacher.InputShape)}] but the student [{string.Join(", ", s.InputShape)}]; both must read the same batches."
            );
        }
        var probes = new ProbeSet();
        foreach (var a in probeActions)
        {
            a(teacher, s, probes);
        }
        var terms = pending.Select(p => p.Make(teacher, s)).ToArray();
        if (pending.Any(p => p.UsesTeacher))
        {
            probes.Uses.Insert(0, TapUse.TeacherLogits);
        }
        return new DistillationSpec(
            teacher,
            s,
            Interop.ToFSharpList(terms),
            Interop.ToFSharpList(probes.Uses),
            pending.Select(p => new LossTermInfo(p.Name, p.Weight, p.UsesTeacher)).ToArray(),
            new ForwardOptions
            {
                Membranes = probes.TeacherMembranes.ToArray(),
                Spikes = probes.TeacherSpikes.ToArray(),
                Taps = probes.TeacherTaps.ToArray(),
            },
            new ForwardOptions
            {
                Membranes = probes.StudentMembranes.ToArray(),
                Spikes = probes.StudentSpikes.ToArray(),
                Taps = probes.StudentTaps.ToArray(),
            }
        );
    }
}
