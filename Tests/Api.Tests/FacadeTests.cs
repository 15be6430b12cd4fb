namespace SnnSpec.Api.Tests;

public class FacadeTests
{
    [Test]
    public void FacadeAssemblyIsNamedSnnSpec()
    {
        Assert.That(typeof(SnnSpec.Facade.Version).Assembly.GetName().Name, Is.EqualTo("SnnSpec"));
    }
}
