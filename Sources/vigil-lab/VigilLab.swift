import ArgumentParser
@main struct VigilLabMain: ParsableCommand { func run() {} }
