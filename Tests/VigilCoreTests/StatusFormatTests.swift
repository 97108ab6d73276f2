import Foundation
import XCTest
@testable import VigilCore
import VigilTestKit

/// `hactl status --output json` carries its format version; a version-1 reader still decodes it.
final class StatusFormatTests: XCTestCase {
    func testStatusJSONCarriesFormatOne() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: "")
        sim.run(3000)
        let st = try XCTUnwrap(sim.status(1))
        let json = String(decoding: try JSONEncoder().encode(st), as: UTF8.self)
        XCTAssertTrue(json.contains("\"format\":1"), json)
        // Unknown fields a later version adds are ignored by this reader.
        let later = json.replacingOccurrences(of: "\"format\":1", with: "\"format\":2,\"somethingNew\":[1,2]")
        XCTAssertEqual(try JSONDecoder().decode(ClusterStatus.self, from: Data(later.utf8)).cluster, st.cluster)
    }
}
