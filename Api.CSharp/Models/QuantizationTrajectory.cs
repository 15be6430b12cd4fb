namespace SnnSpec.Models;

/// <summary>
/// How one spiking population of a quantized model strays from the same population of its float
/// twin, per time step (index t − 1), both run on the same samples in evaluation mode.
/// </summary>
public sealed class PopulationTrajectory
{
    internal PopulationTrajectory(SnnSpec.PopulationTrajectory p)
    {
        Name = p.Name;
        SpikeAgreement = p.SpikeAgreement;
        MembraneError = p.MembraneError;
        FloatRate = p.FloatRate;
        QuantizedRate = p.QuantizedRate;
    }

    /// <summary>The spiking layer's full name.</summary>
    public string Name { get; }

    /// <summary>Fraction of equal spikes at each step; 1 = identical.</summary>
    public IReadOnlyList<double> SpikeAgreement { get; }

    /// <summary>‖H_q − H_f‖₂ / ‖H_f‖₂ of the membrane after charging, at each step.</summary>
    public IReadOnlyList<double> MembraneError { get; }

    /// <summary>Mean spikes per neuron of the float twin at each step.</summary>
    public IReadOnlyList<double> FloatRate { get; }

    /// <summary>Mean spikes per neuron of the quantized model at each step.</summary>
    public IReadOnlyList<double> QuantizedRate { get; }

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name}: spikes agree {SpikeAgreement.Average():P1}, membrane error {MembraneError.Average():F3}";
}

/// <summary>
/// A quantized model against its float twin on a batch (<see cref="SnnModel.CompareWithFloat"/>):
/// where, through depth and time, low-bit weights and membranes send the network down another
/// spike train, and what that does to the prediction.
/// </summary>
public sealed class QuantizationTrajectory
{
    internal QuantizationTrajectory(SnnSpec.QuantTrajectoryReport r)
    {
        Populations = r.Populations.Select(p => new PopulationTrajectory(p)).ToArray();
        LogitError = r.LogitError;
        PredictionAgreement = r.PredictionAgreement;
        Error = r.Error;
    }

    /// <summary>Every spiking population, in forward order.</summary>
    public IReadOnlyList<PopulationTrajectory> Populations { get; }

    /// <summary>‖z_q − z_f‖₂ / ‖z_f‖₂ of the logits at each step.</summary>
    public IReadOnlyList<double> LogitError { get; }

    /// <summary>Fraction of samples predicted alike when read at t = 1…T (cumulative mean logits).</summary>
    public IReadOnlyList<double> PredictionAgreement { get; }

    /// <summary>Mean membrane error over populations and steps plus mean logit error; 0 = the float trajectory.</summary>
    public double Error { get; }

    /// <inheritdoc />
    public override string ToString() =>
        $"error {Error:F3}, same prediction at T on {PredictionAgreement[^1]:P1}; "
        + string.Join("; ", Populations);
}
