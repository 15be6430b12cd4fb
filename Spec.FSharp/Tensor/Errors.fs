namespace SnnSpec

open System

/// The one exception type SnnSpec raises for bad input: wrong shapes, impossible parameters,
/// corrupted files. Its message names the thing that is wrong, the value seen and the fix.
type SnnSpecException(message: string, inner: exn) =
    inherit Exception(message, inner)
    new(message: string) = SnnSpecException(message, null)

/// Raised when an operation receives tensors whose shapes it cannot combine.
/// <c>Op</c> names the operation and <c>Shapes</c> lists every operand's shape.
type ShapeMismatchException(op: string, shapes: int[][], detail: string) =
    inherit
        SnnSpecException(
            let shown =
                shapes
                |> Array.map (fun s -> "[" + String.Join(", ", s) + "]")
                |> String.concat " and "

            sprintf "%s: incompatible shapes %s: %s" op shown detail
        )

    member _.Op = op
    member _.Shapes = shapes

/// Helpers that build SnnSpec's error messages in one consistent form.
module Errors =
    let showShape (s: int[]) = "[" + String.Join(", ", s) + "]"

    let shapeMismatch op (shapes: int[] list) detail =
        raise (ShapeMismatchException(op, Array.ofList shapes, detail))

    /// An argument outside its allowed range: names the operation, the parameter, the value and what is allowed.
    let invalidArg op (name: string) (value: obj) (allowed: string) =
        raise (SnnSpecException(sprintf "%s: %s = %A is not allowed; expected %s." op name value allowed))

    let fail (message: string) = raise (SnnSpecException message)

    /// A kernel's integer parameter that must be ≥ 1.
    let positiveInt op (name: string) (v: int) =
        if v < 1 then
            invalidArg op name (box v) "a positive integer"

    /// A kernel buffer of <c>len</c> elements must hold <c>need</c> elements from <c>off</c>.
    let checkBuffer op (name: string) (len: int) (off: int) (need: int) =
        if off < 0 || off + need > len then
            fail (
                sprintf
                    "%s: buffer %s has %d elements but offset %d + length %d is needed; pass a larger array or a smaller offset."
                    op
                    name
                    len
                    off
                    need
            )
