import XCTest
import VigilCore

/// `hactl config show` never prints a password: every string value of a secret key is masked,
/// wherever TOML lets it be written; everything else stays as the operator wrote it.
final class RedactionTests: XCTestCase {
    func testSecretsAreMaskedWhereverTheyAreWritten() {
        let text = """
            # password = "in a comment stays"
            [[fence]]
            name = "ipmi"
            agent = "fence_ipmilan"
            params = { ip = "10.0.0.9", username = "admin", password = "s3cr\\"et", passwd_script = '/bin/pw' }
            [[fence]]
            name = "apc"
            params.password = 'lit'
            "password" = "quoted key"
            [[resource]]
            name = "db"
            params = { db_password = "multi", user = "app" }
            """
        let out = Redaction.redactSecrets(text)
        for secret in ["s3cr", "/bin/pw", "lit'", "quoted key", "multi"] {
            XCTAssertFalse(out.contains(secret), "\(secret) shown in:\n\(out)")
        }
        for kept in ["# password = \"in a comment stays\"", "ip = \"10.0.0.9\"", "username = \"admin\"", "user = \"app\"", "name = \"apc\""] {
            XCTAssertTrue(out.contains(kept), "\(kept) lost in:\n\(out)")
        }
        XCTAssertTrue(out.contains("password = \"********\""), out)
        XCTAssertTrue(out.contains("params.password = '********'"), out)
        // The masked text is still a valid resources file (the keys are all still there).
        XCTAssertNoThrow(try TOML.parse(out))
    }

    func testTextWithoutSecretsIsUnchanged() {
        let text = "[[ip]]\nname = \"vip\"\naddress = \"192.0.2.1/24\" # keep\ninterface = \"eth0\"\n"
        XCTAssertEqual(Redaction.redactSecrets(text), text)
    }
}

extension RedactionTests {
    /// For users outside root and the admin group: every parameter value, whatever its name.
    func testParametersAreMaskedForOrdinaryUsers() {
        let text = """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:pgsql"
            params = { pgdata = "/srv/pg", replication_user = "repl" }
            preferred = ["a"]
            [[resource]]
            name = "web"
            params.docroot = "/srv/www"
            """
        let out = Redaction.redactParameters(text)
        XCTAssertFalse(out.contains("/srv/pg") || out.contains("repl\"") || out.contains("/srv/www"), out)
        XCTAssertTrue(out.contains("agent = \"ocf:heartbeat:pgsql\"") && out.contains("preferred = [\"a\"]") && out.contains("name = \"web\""), out)
        XCTAssertTrue(out.contains("params = { pgdata = \"********\", replication_user = \"********\" }"), out)
        // For admins only names that look secret are masked.
        XCTAssertEqual(Redaction.redactSecrets(text), text)
    }

    /// Agents' output may echo their command line: the values of secret-looking parameters are
    /// masked before it is logged or sent (issue 9, finding 5).
    func testSecretParameterValuesAreMaskedInAgentOutput() {
        let params = [AgentParam(name: "password", value: "hunter2!"), AgentParam(name: "login", value: "admin"),
                      AgentParam(name: "passwd", value: "abc")]
        let out = "ipmitool -U admin -P hunter2! power off: failed\nretry with hunter2!"
        XCTAssertEqual(Redaction.maskValues(of: params, in: out), "ipmitool -U admin -P ******** power off: failed\nretry with ********")
        XCTAssertEqual(Redaction.maskValues(of: params, in: "abc def"), "abc def", "values under 4 characters are left alone")
    }

    /// Issue 9, finding 5: parameters an agent's meta-data marks private.
    func testPrivateParametersFromMetaData() throws {
        let xml = """
            <resource-agent name="x"><parameters>
            <parameter name="token" private="1"><content type="string"/></parameter>
            <parameter name="colour"><content type="string"/></parameter>
            </parameters></resource-agent>
            """
        guard case .success(let md) = AgentMetadata.parse(xml) else { return XCTFail("meta-data not parsed") }
        XCTAssertEqual(md.privateParameters, ["token"])
        let params = [AgentParam(name: "token", value: "abcd-1234"), AgentParam(name: "colour", value: "bright-blue"), AgentParam(name: "password", value: "hunter22")]
        let out = "token=abcd-1234 colour=bright-blue password=hunter22"
        XCTAssertEqual(Redaction.maskValues(of: params, in: out, privateNames: md.privateParameters), "token=******** colour=bright-blue password=********")
        // Meta-data not known yet: every value.
        XCTAssertEqual(Redaction.maskValues(of: params, in: out, privateNames: nil), "token=******** colour=******** password=********")
        // A value inside another is not left half in clear.
        let overlapping = [AgentParam(name: "user", value: "postgres"), AgentParam(name: "pass", value: "postgres123")]
        XCTAssertEqual(Redaction.maskValues(of: overlapping, in: "u=postgres p=postgres123", privateNames: nil), "u=******** p=********")
        // Without private names (fence devices): secret-looking names only.
        XCTAssertEqual(Redaction.maskValues(of: params, in: out), "token=abcd-1234 colour=bright-blue password=********")
        let text = "[[resource]]\nname = \"r\"\nagent = \"ocf:p:x\"\nparams = { token = \"abcd-1234\", colour = \"blue\" }\ntoken = \"not-a-param\"\n"
        let shown = Redaction.redactSecrets(text, privateNames: ["token"])
        XCTAssertTrue(shown.contains("token = \"********\", colour = \"blue\""), shown)
        XCTAssertTrue(shown.contains("token = \"not-a-param\""), "a key outside params was masked: \(shown)")
    }
}
