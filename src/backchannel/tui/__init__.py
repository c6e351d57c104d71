"""The principal's console (`backchannel tui`): a Textual application over one data source."""
