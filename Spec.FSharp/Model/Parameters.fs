namespace SnnSpec

open System

/// A model's parameters: an ordered collection of named tensors ("conv1.weight", "fc.bias", …).
/// Values are immutable: every update returns a new collection. Models in SnnSpec are a Parameters
/// value plus a pure forward function, so a gradient with respect to a model is a Parameters of
/// the same names and shapes.
[<Sealed>]
type Parameters private (names: string[], tensors: Tensor[]) =
    member _.Names = Array.copy names
    member internal _.NamesRef = names
    member internal _.Tensors = tensors
    /// Number of named tensors.
    member _.Count = names.Length
    /// Total number of scalar parameters.
    member _.ElementCount = tensors |> Array.sumBy (fun t -> int64 t.Numel)

    /// The tensor of one name; the error lists the names that exist.
    member _.Item
        with get (name: string) =
            match Array.IndexOf(names, name) with
            | -1 -> Errors.invalidArg "Parameters" "name" name (sprintf "one of %s" (String.Join(", ", names)))
            | i -> tensors[i]

    member _.TryFind(name: string) =
        match Array.IndexOf(names, name) with
        | -1 -> None
        | i -> Some tensors[i]

    static member internal Create(names: string[], tensors: Tensor[]) =
        let dup = names |> Array.countBy id |> Array.tryFind (fun (_, c) -> c > 1)

        match dup with
        | Some(n, _) -> Errors.invalidArg "Parameters" "name" n "names that are unique within a model"
        | None -> Parameters(names, tensors)

    override _.ToString() =
        let lines =
            Array.map2
                (fun (n: string) (t: Tensor) -> sprintf "  %-32s %s" n (Errors.showShape t.ShapeRef))
                names
                tensors

        sprintf
            "Parameters (%d tensors, %d values)\n%s"
            names.Length
            (tensors |> Array.sumBy (fun t -> int64 t.Numel))
            (String.Join("\n", lines))

module Parameters =
    /// Parameters from (name, tensor) pairs, order kept.
    let ofList (items: (string * Tensor) list) =
        Parameters.Create(items |> List.map fst |> Array.ofList, items |> List.map snd |> Array.ofList)

    /// (name, tensor) pairs in order.
    let toList (p: Parameters) =
        List.ofArray (Array.zip p.NamesRef p.Tensors)

    /// The tensors in order (e.g. to return BN buffers as auxiliary outputs of valueAndGradAux).
    let values (p: Parameters) = Array.copy p.Tensors

    /// A collection with p's names and the given tensors in the same order.
    let withValues (p: Parameters) (tensors: Tensor[]) =
        if tensors.Length <> p.Count then
            Errors.invalidArg
                "Parameters.withValues"
                "tensors"
                tensors.Length
                (sprintf "one tensor per name (%d)" p.Count)

        Parameters.Create(p.NamesRef, Array.copy tensors)

    /// Applies f to every tensor, keeping names.
    let map (f: string -> Tensor -> Tensor) (p: Parameters) =
        Parameters.Create(p.NamesRef, Array.map2 f p.NamesRef p.Tensors)

    let private checkSameNames (op: string) (a: Parameters) (b: Parameters) =
        if a.NamesRef <> b.NamesRef then
            Errors.invalidArg
                op
                "names"
                (String.Join(", ", b.NamesRef))
                (sprintf "the same names in the same order: %s" (String.Join(", ", a.NamesRef)))

    /// Combines two collections with the same names tensor by tensor.
    let map2 (f: string -> Tensor -> Tensor -> Tensor) (a: Parameters) (b: Parameters) =
        checkSameNames "Parameters.map2" a b
        Parameters.Create(a.NamesRef, Array.map3 f a.NamesRef a.Tensors b.Tensors)

    /// Prefixes every name ("fc" → "fc.weight") to nest one model's parameters in another's.
    let prefix (p: string) (ps: Parameters) =
        Parameters.Create(ps.NamesRef |> Array.map (fun n -> p + "." + n), ps.Tensors)

    /// Concatenates collections (names must stay unique).
    let concat (ps: Parameters list) =
        Parameters.Create(
            ps |> Seq.collect (fun p -> p.NamesRef) |> Array.ofSeq,
            ps |> Seq.collect (fun p -> p.Tensors) |> Array.ofSeq
        )

    /// The tensors whose names start with <c>prefix + "."</c>, with the prefix removed.
    let sub (prefix: string) (ps: Parameters) =
        let pre = prefix + "."

        let idx =
            ps.NamesRef
            |> Array.indexed
            |> Array.filter (fun (_, n) -> n.StartsWith pre)
            |> Array.map fst

        Parameters.Create(
            idx |> Array.map (fun i -> ps.NamesRef[i].Substring pre.Length),
            idx |> Array.map (fun i -> ps.Tensors[i])
        )

    /// The value and the gradient of a scalar-valued f of a model's parameters; the gradient has
    /// the same names and shapes as the parameters.
    let valueAndGrad (f: Parameters -> Tensor) (p: Parameters) : Tensor * Parameters =
        let v, g =
            Diff.valueAndGradN (fun ts -> f (Parameters.Create(p.NamesRef, ts))) p.Tensors

        v, Parameters.Create(p.NamesRef, g)

    /// Like valueAndGrad, also returning auxiliary tensors computed by f (kept alive after the call).
    let valueAndGradAux (f: Parameters -> Tensor * Tensor[]) (p: Parameters) : Tensor * Parameters * Tensor[] =
        let v, g, aux =
            Diff.valueAndGradAux (fun ts -> f (Parameters.Create(p.NamesRef, ts))) p.Tensors

        v, Parameters.Create(p.NamesRef, g), aux

    /// The gradient of f with respect to the parameters.
    let grad (f: Parameters -> Tensor) (p: Parameters) = snd (valueAndGrad f p)
