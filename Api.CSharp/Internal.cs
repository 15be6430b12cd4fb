using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;

namespace SnnSpec.Facade;

/// <summary>Conversions between FSharp.Core types and BCL types, kept internal to the facade.</summary>
internal static class Interop
{
    public static FSharpList<T> ToFSharpList<T>(IEnumerable<T> items) => ListModule.OfSeq(items);

    public static FSharpSet<string> ToFSharpSet(IEnumerable<string> items) =>
        SetModule.OfSeq(items);

    public static FSharpOption<T> Some<T>(T value) => FSharpOption<T>.Some(value);

    public static FSharpOption<T>? None<T>() => FSharpOption<T>.None;

    public static IReadOnlyDictionary<string, TValue> ToDictionary<TValue>(
        FSharpMap<string, TValue> map
    )
    {
        var d = new Dictionary<string, TValue>(StringComparer.Ordinal);
        foreach (var kv in map)
        {
            d[kv.Key] = kv.Value;
        }
        return d;
    }

    public static FSharpMap<string, TValue> ToFSharpMap<TValue>(
        IEnumerable<KeyValuePair<string, TValue>> items
    ) => MapModule.OfSeq(items.Select(kv => Tuple.Create(kv.Key, kv.Value)));
}

/// <summary>Shared argument checks with messages that say what is wrong and what is allowed.</summary>
internal static class Check
{
    public static void Positive(int value, string name, string? what = null)
    {
        if (value <= 0)
        {
            throw new ArgumentOutOfRangeException(
                name,
                value,
                $"{what ?? name} must be a positive integer (got {value})."
            );
        }
    }

    public static void NonNegative(int value, string name, string? what = null)
    {
        if (value < 0)
        {
            throw new ArgumentOutOfRangeException(
                name,
                value,
                $"{what ?? name} must be zero or positive (got {value})."
            );
        }
    }

    public static void PositiveFinite(float value, string name, string? what = null)
    {
        if (!(value > 0f) || float.IsInfinity(value))
        {
            throw new ArgumentOutOfRangeException(
                name,
                value,
                $"{what ?? name} must be a finite number > 0 (got {value})."
            );
        }
    }

    public static void NonNegativeFinite(float value, string name, string? what = null)
    {
        if (!(value >= 0f) || float.IsInfinity(value))
        {
            throw new ArgumentOutOfRangeException(
                name,
                value,
                $"{what ?? name} must be a finite number >= 0 (got {value})."
            );
        }
    }

    public static void Range(int value, int min, int max, string name, string? what = null)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(
                name,
                value,
                $"{what ?? name} must lie in {min}…{max} (got {value})."
            );
        }
    }

    public static void Fraction(float value, bool includeOne, string name, string? what = null)
    {
        bool ok = includeOne ? value >= 0f && value <= 1f : value >= 0f && value < 1f;
        if (!ok)
        {
            throw new ArgumentOutOfRangeException(
                name,
                value,
                $"{what ?? name} must lie in [0, 1{(includeOne ? "]" : ")")} (got {value})."
            );
        }
    }

    public static T NotNull<T>(T? value, string name)
        where T : class =>
        value ?? throw new ArgumentNullException(name, $"{name} must not be null.");

    public static string Name(string? value, string name)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException(
                $"{name} must be a non-empty name (got {(value is null ? "null" : "\"" + value + "\"")}).",
                name
            );
        }
        return value;
    }
}
