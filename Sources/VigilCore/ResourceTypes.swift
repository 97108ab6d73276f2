/// The parts of a resources file besides addresses (see ResourceConfig.swift).
public struct AgentResource: Sendable, Equatable, Codable {
    public var name: String
    public var agent: AgentSpec
    public var params: [AgentParam]
}

public struct ResourceGroup: Sendable, Equatable, Codable {
    public var name: String
    public var members: [String]
}

public struct Colocation: Sendable, Equatable, Codable {
    public var resource: String
    public var with: String
    public var score: Int
}

public struct Ordering: Sendable, Equatable, Codable {
    public var first: String
    public var then: String
}
