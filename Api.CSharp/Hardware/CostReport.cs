using SnnSpec.HwSim;

namespace SnnSpec.Hardware;

/// <summary>One weight layer's placement and cost.</summary>
public sealed record LayerCost
{
    /// <summary>Full layer name, e.g. "conv1" or "layer1.0.conv2".</summary>
    public required string Name { get; init; }

    /// <summary>Crossbars holding the layer's weights.</summary>
    public required int Crossbars { get; init; }

    /// <summary>Processing elements the layer occupies.</summary>
    public required int Pes { get; init; }

    /// <summary>PE cycles per time step.</summary>
    public required long CyclesPerStep { get; init; }

    /// <summary>Energy over all steps in picojoules.</summary>
    public required double EnergyPicojoules { get; init; }

    /// <summary>The layer's share of the pipelined latency in nanoseconds.</summary>
    public required double LatencyNanoseconds { get; init; }

    /// <summary>Input firing rate the energy was charged at (1 = dense).</summary>
    public required double InputRate { get; init; }
}

/// <summary>The energy, latency and area of one model on one accelerator at T steps.</summary>
public sealed class CostReport
{
    internal CostReport(Report report)
    {
        Inner = report;
        var energy = report.Energy.Layers.ToArray();
        var latency = report.Latency.Layers.ToArray();
        Layers = report
            .Mapping.Layers.Select(
                (m, i) =>
                    new LayerCost
                    {
                        Name = m.Layer.Name,
                        Crossbars = m.Crossbars,
                        Pes = m.Pes,
                        CyclesPerStep = m.CyclesPerStep,
                        EnergyPicojoules = energy[i].Total,
                        LatencyNanoseconds = latency[i].Latency,
                        InputRate = energy[i].InputRate,
                    }
            )
            .ToArray();
        var e = report.Energy.Components;
        EnergyBreakdown = new Dictionary<string, double>
        {
            ["crossbar"] = e.Crossbar,
            ["adc"] = e.Adc,
            ["mux"] = e.Mux,
            ["subtractor"] = e.Subtractor,
            ["temp-buffer"] = e.TempBuffer,
            ["tile-buffer"] = e.TileBuffer,
            ["h-tree"] = e.HTree,
            ["memory-fetch"] = e.MemoryFetch,
            ["neuron"] = e.Neuron,
            ["shift-add"] = e.ShiftAdd,
        };
        var a = report.Area.Components;
        AreaBreakdown = new Dictionary<string, double>
        {
            ["crossbars"] = a.Crossbars,
            ["adcs"] = a.Adcs,
            ["muxes"] = a.Muxes,
            ["subtractors"] = a.Subtractors,
            ["temp-buffers"] = a.TempBuffers,
            ["tile-buffers"] = a.TileBuffers,
            ["h-tree"] = a.HTree,
            ["input-memory"] = a.InputMemory,
            ["membrane-memory"] = a.MembraneMemory,
        };
    }

    internal Report Inner { get; }

    /// <summary>The costed network's name.</summary>
    public string Network => Inner.Network.Name;

    /// <summary>Time steps T.</summary>
    public int Steps => Inner.Steps;

    /// <summary>Total energy E in picojoules.</summary>
    public double EnergyPicojoules => Inner.E;

    /// <summary>Latency D in nanoseconds.</summary>
    public double LatencyNanoseconds => Inner.D;

    /// <summary>Chip area A in square micrometres.</summary>
    public double AreaSquareMicrometres => Inner.A;

    /// <summary>Energy-delay product E·D in J·s.</summary>
    public double Edp => Inner.Edp;

    /// <summary>Energy-delay-area product E·D·A in J·s·mm².</summary>
    public double Edap => Inner.Edap;

    /// <summary>Operations over all steps (2 per dense MAC).</summary>
    public double Operations => Inner.Ops;

    /// <summary>Energy efficiency in TOPS/W.</summary>
    public double TopsPerWatt => Inner.TopsPerWatt;

    /// <summary>Area efficiency in TOPS/mm².</summary>
    public double TopsPerMm2 => Inner.TopsPerMm2;

    /// <summary>Tiles used.</summary>
    public int Tiles => Inner.Mapping.Tiles;

    /// <summary>Processing elements used.</summary>
    public int Pes => Inner.Mapping.TotalPes;

    /// <summary>Per weight layer placement and cost, in forward order.</summary>
    public IReadOnlyList<LayerCost> Layers { get; }

    /// <summary>Energy by component in picojoules (crossbar, adc, mux, …).</summary>
    public IReadOnlyDictionary<string, double> EnergyBreakdown { get; }

    /// <summary>Area by component in square micrometres (crossbars, adcs, …).</summary>
    public IReadOnlyDictionary<string, double> AreaBreakdown { get; }

    /// <summary>A readable summary: mapping table, totals, metrics and breakdowns.</summary>
    public string Summary() => Metrics.summary(Inner);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Network}, T = {Steps}: E {EnergyPicojoules:G6} pJ, D {LatencyNanoseconds:G6} ns, A {AreaSquareMicrometres:G6} um2";
}

/// <summary>
/// Candidate-versus-baseline ratios. Cost ratios are baseline / candidate (times lower); efficiency
/// ratios are candidate / baseline (times higher), so a value above 1 always favours the candidate.
/// </summary>
public sealed class CostComparison
{
    internal CostComparison(Comparison c, CostReport baseline, CostReport candidate)
    {
        Inner = c;
        Baseline = baseline;
        Candidate = candidate;
    }

    internal Comparison Inner { get; }

    /// <summary>The network both reports cost.</summary>
    public string Network => Inner.Network;

    /// <summary>The baseline report.</summary>
    public CostReport Baseline { get; }

    /// <summary>The candidate report.</summary>
    public CostReport Candidate { get; }

    /// <summary>Energy, times lower.</summary>
    public double EnergyRatio => Inner.Energy;

    /// <summary>Latency, times lower.</summary>
    public double LatencyRatio => Inner.Latency;

    /// <summary>Area, times lower.</summary>
    public double AreaRatio => Inner.Area;

    /// <summary>EDP, times lower.</summary>
    public double EdpRatio => Inner.Edp;

    /// <summary>EDAP, times lower.</summary>
    public double EdapRatio => Inner.Edap;

    /// <summary>TOPS/W, times higher.</summary>
    public double TopsPerWattRatio => Inner.TopsPerWatt;

    /// <summary>TOPS/mm², times higher.</summary>
    public double TopsPerMm2Ratio => Inner.TopsPerMm2;

    /// <summary>The ratios as one line of text.</summary>
    public string Summary() => Metrics.comparisonSummary(Inner);

    /// <inheritdoc />
    public override string ToString() => Summary();
}
