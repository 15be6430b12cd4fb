namespace SnnSpec.Facade;

/// <summary>Version information of the SnnSpec facade and the core it wraps.</summary>
public static class Version
{
    /// <summary>The informational version of the F# core assembly (SnnSpec.Spec).</summary>
    public static string Core =>
        typeof(SnnSpec.Tensor).Assembly.GetName().Version?.ToString() ?? "unknown";
}
