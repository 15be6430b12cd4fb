// Placeholder replaced by the quickstart training example.
printfn "SnnSpec quickstart"
